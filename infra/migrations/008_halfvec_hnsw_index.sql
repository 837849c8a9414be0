-- Search at platform scale: the HNSW index holds half-precision copies of the
-- embeddings (an expression index on embedding_visual_clip::halfvec(512)),
-- as pgvector's README recommends ("Half-precision indexing"). The column stays
-- vector(512): the table is not rewritten, the exact fallback and the distances
-- the functions return stay full precision.
--
-- Why (bench/search.py: 1,000 owners of Zipf sizes, scene-like vectors, held-out
-- queries; figures in docs/scaling.md): the index is half the size of a vector(512)
-- one (1.3 instead of 2.6 GB per million scenes) with no loss of recall, because the
-- index only picks candidates and they are ranked again by exact vector distance.
-- The candidate pool is what big owners' recall depends on most: at least 100
-- candidates lifted the largest owner's recall@10 at 1M scenes from 0.71 (2 x
-- match_count) to 0.80, and at 100k from 0.87 to 0.98. hnsw.ef_search stays at 004's
-- 100: 400 adds only ~0.03 at 1M (owners of 1-5%: 0.94 -> 0.95) for ~3x the walk's
-- latency (a deployment that wants it: ALTER FUNCTION ... SET hnsw.ef_search = 400).
-- Owners under 1% of the rows take the exact owner_id path either way.
--
-- Cost on an existing database: vidx runs each migration in one transaction, so
-- this CREATE INDEX is not CONCURRENTLY: it holds a SHARE lock on scenes while
-- it builds (searches keep working on the old index; scene writes wait). That is
-- about a minute per 100k scenes and ~10 minutes per million on 2 busy cores. For a big table,
-- build the index beforehand outside any transaction, then upgrade: the
-- CREATE INDEX below finds it and does nothing (docs/scaling.md, "Upgrading"):
--   SET maintenance_work_mem = '2GB';
--   CREATE INDEX CONCURRENTLY IF NOT EXISTS scenes_embedding_halfvec_hnsw_idx ON scenes
--       USING hnsw ((embedding_visual_clip::halfvec(512)) halfvec_cosine_ops);

SELECT '[0]'::vector;

DO $$
BEGIN
    -- An index left INVALID by an interrupted CREATE INDEX CONCURRENTLY is never used
    -- by the planner and would make IF NOT EXISTS below a silent no-op: rebuild it.
    IF EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
               WHERE c.relname = 'scenes_embedding_halfvec_hnsw_idx' AND NOT i.indisvalid) THEN
        DROP INDEX scenes_embedding_halfvec_hnsw_idx;
    END IF;
    -- The build is fast while the graph fits in maintenance_work_mem (~1.2 KB per scene
    -- here); raise PostgreSQL's 64 MB default for this transaction on a big table.
    IF (SELECT reltuples FROM pg_class WHERE oid = 'scenes'::regclass) > 50000
       AND pg_size_bytes(current_setting('maintenance_work_mem')) < pg_size_bytes('1GB') THEN
        PERFORM set_config('maintenance_work_mem', '1GB', true);
    END IF;
END;
$$;

CREATE INDEX IF NOT EXISTS scenes_embedding_halfvec_hnsw_idx ON scenes
    USING hnsw ((embedding_visual_clip::halfvec(512)) halfvec_cosine_ops);

-- Same signatures, arguments, checks and results as migration 004; only the
-- ORDER BY of the index walk changes to the indexed expression.
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
    query_half  halfvec(512);
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
    query_half := query_embedding::halfvec(512);

    -- Approximate: the halfvec HNSW index picks max(2 x match_count, 100) candidates
    -- (owner/model/label filters applied during the iterative scan, whose relaxed order
    -- is only roughly nearest-first); the best match_count by exact distance are kept.
    -- Half precision also blurs distances in the 4th digit, where near-duplicate shots
    -- of one video differ: without spare candidates, recall@10 drops below 1 even on
    -- the exact (owner btree) path.
    WITH nearest AS MATERIALIZED (
        SELECT s.id, s.embedding_visual_clip <=> query_embedding AS distance
        FROM scenes s
        WHERE s.owner_id = filter_user_id
          AND s.embedding_visual_clip IS NOT NULL
          AND (filter_model IS NULL OR s.embedding_model = filter_model)
          AND (label_json IS NULL OR s.labels @> label_json)
        ORDER BY s.embedding_visual_clip::halfvec(512) <=> query_half
        LIMIT greatest(match_count * 2, 100)
    )
    SELECT array_agg(b.id ORDER BY b.distance), array_agg(b.distance ORDER BY b.distance)
    INTO hit_ids, hit_dists
    FROM (SELECT n.id, n.distance FROM nearest n ORDER BY n.distance LIMIT match_count) b;

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
            -- (full precision; "+ 0" keeps the planner off any HNSW index).
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

-- search_similar_scenes (migration 004) calls the function above: unchanged.

-- The full-precision index is no longer read by anything; dropping it last keeps
-- its ACCESS EXCLUSIVE lock to the end of this transaction only.
DROP INDEX IF EXISTS scenes_embedding_visual_clip_hnsw_idx;

ANALYZE scenes;
