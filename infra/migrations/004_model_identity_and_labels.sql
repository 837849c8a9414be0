-- Model identity and scene understanding.
--
-- embedding_model: which model made embedding_visual_clip, as
--   '<model name>/<pretrained tag>' for hub weights, plus '@sha256:<16 hex>' of the
--   weights file for a local checkpoint (pipeline/clip/identity.py makes it).
--   NULL when there is no embedding. A query is compared only with embeddings
--   of the same model: vectors of two models live in unrelated spaces.
-- labels: top zero-shot labels, [{"label": str, "score": float}, ...] descending.
-- description: a short phrase ranked from vocabularies (not a caption).

ALTER TABLE scenes ADD COLUMN IF NOT EXISTS embedding_model text;
ALTER TABLE scenes ADD COLUMN IF NOT EXISTS labels jsonb;
ALTER TABLE scenes ADD COLUMN IF NOT EXISTS description text;

-- Rows embedded before this migration: name and tag from their metadata. A local
-- checkpoint's checksum is unknown here, so such rows match only a model configured
-- by tag; `vidx reembed` moves them to the configured model.
UPDATE scenes
   SET embedding_model = (visual_clip_metadata->>'model_name') || '/' || (visual_clip_metadata->>'pretrained')
 WHERE embedding_model IS NULL
   AND embedding_visual_clip IS NOT NULL
   AND visual_clip_metadata ? 'model_name';

-- "Scenes labelled X": labels @> '[{"label": "X"}]' is served by this index.
CREATE INDEX IF NOT EXISTS scenes_labels_idx ON scenes USING gin (labels jsonb_path_ops);
CREATE INDEX IF NOT EXISTS scenes_owner_model_idx ON scenes (owner_id, embedding_model);

SELECT '[0]'::vector;

-- The four-argument signature keeps working: the new arguments default to NULL
-- (no filter). The old function is dropped first so a four-argument call is not ambiguous.
DROP FUNCTION IF EXISTS search_scenes_by_visual_clip_embedding(vector, double precision, integer, uuid);
DROP FUNCTION IF EXISTS search_similar_scenes(uuid, double precision, integer, uuid);

CREATE OR REPLACE FUNCTION search_scenes_by_visual_clip_embedding(
    query_embedding  vector(512),
    match_threshold  double precision,
    match_count      integer,
    filter_user_id   uuid,
    filter_model     text DEFAULT NULL,
    filter_label     text DEFAULT NULL
) RETURNS TABLE (
    id           uuid,
    video_id     uuid,
    scene_index  integer,
    start_s      double precision,
    end_s        double precision,
    frame_path   text,
    similarity   double precision
)
LANGUAGE plpgsql STABLE
SET hnsw.iterative_scan = 'relaxed_order'
SET hnsw.ef_search = '100'
SET hnsw.max_scan_tuples = '40000'
SET plan_cache_mode = 'force_custom_plan'
AS $$
#variable_conflict use_column
DECLARE
    hit_ids     uuid[];
    hit_dists   double precision[];
    n_found     integer;
    available   integer;
    label_json  jsonb;
BEGIN
    IF filter_user_id IS NULL THEN
        RAISE EXCEPTION 'filter_user_id must not be NULL: a search is always scoped to one owner'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF query_embedding IS NULL THEN
        RAISE EXCEPTION 'query_embedding must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF match_threshold IS NULL THEN
        RAISE EXCEPTION 'match_threshold must not be NULL (use -1 for no threshold)'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF match_count IS NULL OR match_count < 1 OR match_count > 1000 THEN
        RAISE EXCEPTION 'match_count must be between 1 and 1000, got %', match_count
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    label_json := CASE WHEN filter_label IS NULL THEN NULL
                       ELSE jsonb_build_array(jsonb_build_object('label', filter_label)) END;

    -- Approximate: the HNSW index, owner/model/label filters applied during the iterative scan.
    WITH nearest AS MATERIALIZED (
        SELECT s.id, s.embedding_visual_clip <=> query_embedding AS distance
        FROM scenes s
        WHERE s.owner_id = filter_user_id
          AND s.embedding_visual_clip IS NOT NULL
          AND (filter_model IS NULL OR s.embedding_model = filter_model)
          AND (label_json IS NULL OR s.labels @> label_json)
        ORDER BY s.embedding_visual_clip <=> query_embedding
        LIMIT match_count
    )
    SELECT array_agg(n.id ORDER BY n.distance), array_agg(n.distance ORDER BY n.distance)
    INTO hit_ids, hit_dists
    FROM nearest n;

    n_found := coalesce(cardinality(hit_ids), 0);
    IF n_found < match_count THEN
        SELECT count(*) INTO available FROM (
            SELECT 1 FROM scenes s
            WHERE s.owner_id = filter_user_id AND s.embedding_visual_clip IS NOT NULL
              AND (filter_model IS NULL OR s.embedding_model = filter_model)
              AND (label_json IS NULL OR s.labels @> label_json)
            LIMIT n_found + 1
        ) owner_rows;
        IF available > n_found THEN
            -- The index walk ended early: exact search over this owner's rows
            -- ("+ 0" keeps the planner off the HNSW index).
            SELECT array_agg(e.id ORDER BY e.distance), array_agg(e.distance ORDER BY e.distance)
            INTO hit_ids, hit_dists
            FROM (
                SELECT s.id, s.embedding_visual_clip <=> query_embedding AS distance
                FROM scenes s
                WHERE s.owner_id = filter_user_id
                  AND s.embedding_visual_clip IS NOT NULL
                  AND (filter_model IS NULL OR s.embedding_model = filter_model)
                  AND (label_json IS NULL OR s.labels @> label_json)
                ORDER BY (s.embedding_visual_clip <=> query_embedding) + 0
                LIMIT match_count
            ) e;
        END IF;
    END IF;

    RETURN QUERY
    SELECT s.id, s.video_id, s.scene_index, s.start_s, s.end_s, s.frame_path,
           1 - h.distance AS similarity
    FROM unnest(hit_ids, hit_dists) WITH ORDINALITY AS h(id, distance, rank)
    JOIN scenes s ON s.id = h.id
    WHERE 1 - h.distance >= match_threshold
    ORDER BY h.rank;
END;
$$;

COMMENT ON FUNCTION search_scenes_by_visual_clip_embedding(vector, double precision, integer, uuid, text, text) IS
    'Scenes of filter_user_id nearest to query_embedding by cosine distance, best first; '
    'similarity = 1 - cosine distance, only >= match_threshold, at most match_count (1..1000). '
    'filter_model (optional): only embeddings of that model; filter_label (optional): only scenes with that label. '
    'A NULL owner is refused.';

CREATE OR REPLACE FUNCTION search_similar_scenes(
    scene_id         uuid,
    match_threshold  double precision,
    match_count      integer,
    filter_user_id   uuid,
    filter_label     text DEFAULT NULL
) RETURNS TABLE (
    id           uuid,
    video_id     uuid,
    scene_index  integer,
    start_s      double precision,
    end_s        double precision,
    frame_path   text,
    similarity   double precision
)
LANGUAGE plpgsql STABLE
AS $$
#variable_conflict use_variable
DECLARE
    query_vector  vector(512);
    query_model   text;
    has_row       boolean;
BEGIN
    IF filter_user_id IS NULL THEN
        RAISE EXCEPTION 'filter_user_id must not be NULL: a search is always scoped to one owner'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF match_count IS NULL OR match_count < 1 OR match_count > 1000 THEN
        RAISE EXCEPTION 'match_count must be between 1 and 1000, got %', match_count
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT true, s.embedding_visual_clip, s.embedding_model INTO has_row, query_vector, query_model
    FROM scenes s
    WHERE s.id = scene_id AND s.owner_id = filter_user_id;
    IF has_row IS NULL THEN
        -- same answer whether the scene is missing or another owner's
        RAISE EXCEPTION 'no scene % for owner %', scene_id, filter_user_id USING ERRCODE = 'no_data_found';
    END IF;
    IF query_vector IS NULL THEN
        RAISE EXCEPTION 'scene % has no embedding (see its visual_clip_metadata.error)', scene_id
            USING ERRCODE = 'no_data_found';
    END IF;

    -- compared only with embeddings of the scene's own model; the scene itself
    -- is its own best match: ask for one more and drop it
    RETURN QUERY
    SELECT r.id, r.video_id, r.scene_index, r.start_s, r.end_s, r.frame_path, r.similarity
    FROM search_scenes_by_visual_clip_embedding(
        query_vector, match_threshold, least(match_count + 1, 1000), filter_user_id,
        query_model, filter_label) r
    WHERE r.id <> scene_id
    ORDER BY r.similarity DESC
    LIMIT match_count;
END;
$$;

COMMENT ON FUNCTION search_similar_scenes(uuid, double precision, integer, uuid, text) IS
    'Scenes of filter_user_id most similar to scene scene_id (itself excluded, same model only), best first.';
