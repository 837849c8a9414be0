-- Jobs as leases in the video row (issue 11), instead of session advisory locks,
-- so a claim needs no session state and works behind transaction-mode poolers.
--   generation        bumped by every enqueue; the newest one's result is what remains
--   run_generation    the generation the current (or last) run works on
--   lease_holder      who runs it now (worker/process/run token); NULL when nobody does
--   lease_expires_at  renewed by the run's heartbeat; past it, the run is presumed dead
--   sidecar_version   the published sidecar version directory the scenes' frame_path point into
-- Existing rows keep working: a 'running' row with no lease counts as expired and is requeued.

ALTER TABLE videos ADD COLUMN IF NOT EXISTS generation bigint NOT NULL DEFAULT 1;
ALTER TABLE videos ADD COLUMN IF NOT EXISTS run_generation bigint;
ALTER TABLE videos ADD COLUMN IF NOT EXISTS lease_holder text;
ALTER TABLE videos ADD COLUMN IF NOT EXISTS lease_expires_at timestamptz;
ALTER TABLE videos ADD COLUMN IF NOT EXISTS sidecar_version text;

-- The reconciler's scan: running rows by lease expiry.
CREATE INDEX IF NOT EXISTS videos_running_lease_idx ON videos (lease_expires_at) WHERE status = 'running';
