-- The full URL a worker fetches when `videos.source` holds only its redacted form
-- (a presigned query string, user-info). A requeue after a crash needs it: the
-- reconciler sends a new message with it. Never selected for display (status,
-- API); cleared when the video ends, so a credential lives only while a run may need it.
ALTER TABLE videos ADD COLUMN IF NOT EXISTS fetch_url text;
COMMENT ON COLUMN videos.fetch_url IS
    'Full fetch URL (may hold a signature) while the video is queued or running; NULL otherwise. Never displayed.';
