-- vidx schema: videos, scenes with a CLIP embedding under an HNSW cosine index.
-- Idempotent (IF NOT EXISTS) so that re-running it by hand is harmless; vidx
-- itself applies it once and records it in schema_migrations.

CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE IF NOT EXISTS videos (
    id           uuid PRIMARY KEY,
    owner_id     uuid NOT NULL,
    source       text NOT NULL,
    status       text NOT NULL DEFAULT 'queued'
                 CONSTRAINT videos_status_check CHECK (status IN ('queued', 'running', 'done', 'failed')),
    progress     real NOT NULL DEFAULT 0
                 CONSTRAINT videos_progress_check CHECK (progress >= 0 AND progress <= 1),
    error        text,
    attempts     integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    duration_s   double precision,
    fps          double precision,
    frame_count  integer,
    width        integer,
    height       integer,
    codec        text,
    rotation     integer,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz,
    -- lets scenes reference (video, owner) so a scene can never carry another owner's id
    CONSTRAINT videos_id_owner_key UNIQUE (id, owner_id)
);

CREATE INDEX IF NOT EXISTS videos_owner_id_idx ON videos (owner_id);
CREATE INDEX IF NOT EXISTS videos_status_updated_at_idx ON videos (status, updated_at);

CREATE OR REPLACE FUNCTION vidx_touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

DROP TRIGGER IF EXISTS videos_touch_updated_at ON videos;
CREATE TRIGGER videos_touch_updated_at BEFORE UPDATE ON videos
    FOR EACH ROW EXECUTE FUNCTION vidx_touch_updated_at();

CREATE TABLE IF NOT EXISTS scenes (
    id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    video_id               uuid NOT NULL,
    owner_id               uuid NOT NULL,
    scene_index            integer NOT NULL CHECK (scene_index >= 0),
    start_frame            integer NOT NULL CHECK (start_frame >= 0),
    end_frame              integer NOT NULL,
    start_s                double precision NOT NULL,
    end_s                  double precision NOT NULL,
    best_frame             integer,
    best_time_s            double precision,
    frame_path             text,
    frame_quality          jsonb,
    embedding_visual_clip  vector(512),
    visual_clip_metadata   jsonb,
    created_at             timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT scenes_video_scene_index_key UNIQUE (video_id, scene_index),
    CONSTRAINT scenes_frames_check CHECK (end_frame >= start_frame),
    CONSTRAINT scenes_video_owner_fkey FOREIGN KEY (video_id, owner_id)
        REFERENCES videos (id, owner_id) ON DELETE CASCADE ON UPDATE CASCADE
);

-- A vector(512) is 2 KB: with the default EXTERNAL storage every row's
-- vector would live in TOAST, one more lookup per row for exact scans and
-- for the distance the search function returns. Keep it in the row.
ALTER TABLE scenes ALTER COLUMN embedding_visual_clip SET STORAGE PLAIN;

CREATE INDEX IF NOT EXISTS scenes_owner_id_idx ON scenes (owner_id);
CREATE INDEX IF NOT EXISTS scenes_embedding_visual_clip_hnsw_idx
    ON scenes USING hnsw (embedding_visual_clip vector_cosine_ops);
