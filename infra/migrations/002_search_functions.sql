-- Search RPCs. Callers (SQL users, the CLI) need no session settings: the
-- HNSW knobs are attached to the functions with SET clauses, which also
-- scopes them to the call.
--
-- How a tenant filter meets an approximate index: the inner query orders by
-- distance with a LIMIT, so the planner can walk the HNSW index; pgvector
-- 0.8's iterative scan (relaxed_order) keeps walking until match_count rows
-- of this owner are found, instead of stopping after ef_search candidates
-- that mostly belong to other owners. hnsw.max_scan_tuples bounds that walk;
-- if it ends short while the owner holds more rows (a tiny tenant on a big
-- table), the function falls back to an exact scan of that owner's rows
-- through the owner_id btree, so match_count rows always come back.
-- The similarity threshold is applied outside the LIMIT, never inside it,
-- so it cannot turn the index scan into a scan of everything.

-- Load pgvector in this session so its hnsw.* settings are defined: a
-- non-superuser may not attach SET clauses for settings PostgreSQL does not know yet.
SELECT '[0]'::vector;

CREATE OR REPLACE FUNCTION search_scenes_by_visual_clip_embedding(
    query_embedding  vector(512),
    match_threshold  double precision,
    match_count      integer,
    filter_user_id   uuid
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
    hit_ids    uuid[];
    hit_dists  double precision[];
    n_found    integer;
    available  integer;
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

    -- Approximate: the HNSW index, owner filter applied during the iterative scan.
    WITH nearest AS MATERIALIZED (
        SELECT s.id, s.embedding_visual_clip <=> query_embedding AS distance
        FROM scenes s
        WHERE s.owner_id = filter_user_id
          AND s.embedding_visual_clip IS NOT NULL
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

COMMENT ON FUNCTION search_scenes_by_visual_clip_embedding(vector, double precision, integer, uuid) IS
    'Scenes of filter_user_id nearest to query_embedding by cosine distance, best first; '
    'similarity = 1 - cosine distance, only >= match_threshold, at most match_count (1..1000). '
    'A NULL owner is refused.';

CREATE OR REPLACE FUNCTION search_similar_scenes(
    scene_id         uuid,
    match_threshold  double precision,
    match_count      integer,
    filter_user_id   uuid
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
    SELECT true, s.embedding_visual_clip INTO has_row, query_vector
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

    -- the scene itself is its own best match: ask for one more and drop it
    RETURN QUERY
    SELECT r.id, r.video_id, r.scene_index, r.start_s, r.end_s, r.frame_path, r.similarity
    FROM search_scenes_by_visual_clip_embedding(
        query_vector, match_threshold, least(match_count + 1, 1000), filter_user_id) r
    WHERE r.id <> scene_id
    ORDER BY r.similarity DESC
    LIMIT match_count;
END;
$$;

COMMENT ON FUNCTION search_similar_scenes(uuid, double precision, integer, uuid) IS
    'Scenes of filter_user_id most similar to scene scene_id (itself excluded), best first.';
