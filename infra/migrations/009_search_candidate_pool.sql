-- Search at a million scenes: exact search for owners up to a size, and a bigger exact
-- re-rank behind the HNSW walk for the owners above it.
--
-- Measured (bench/search.py --n 1000000: 1,000 owners of Zipf sizes, 200 held-out queries
-- per size class; bench/results/search-1m-009.json, search-1m-pools.json, docs/scaling.md):
--
-- * vidx.exact_search_max_rows (default 200000): an owner with at most that many scenes is
--   searched exactly, through the owner_id btree and full-precision distance. Exact search
--   costs ~1.1 ms per 1,000 of the owner's scenes on the bench's 2 shared cores, whatever the
--   table's size: ~0.15 s for the bench's largest owner (134k scenes, 13% of the rows), about
--   what the HNSW walk costs that owner (p50 ~0.1 s, p99 0.28-0.38 s), and the walk only
--   reaches recall@10 ~0.84 there: for queries unlike anything the owner filmed its nearest
--   rows are all about equally far (similarity ~0.36 against ~0.35) and a graph walk ranks
--   that flat region poorly. With the bound every owner class is 1.0 at 1M, with a lower p99
--   than without it (144 against 231 ms). The same idea as Weaviate's flatSearchCutoff and
--   Qdrant's full_scan_threshold, by the owner's own size. Set per database, role or session
--       ALTER DATABASE <db> SET vidx.exact_search_max_rows = 50000;
--   0 turns it off (the planner alone decides, as in migration 008).
-- * Owners above the bound walk the HNSW index, now re-ranking >= 1000 candidates by exact
--   distance (008: 100): the largest owner's walk went from ~0.80 to ~0.84, and without the
--   bound the planner, costing LIMIT 1000 honestly, takes the btree and an exact sort for
--   owners up to ~7% of the rows (1-5% owners: 0.94 -> 1.0 at the same ~35 ms p50).
--
-- Same signatures, arguments, checks and results as migrations 004 and 008; no index
-- changes, so this migration is instant on any table.

SELECT '[0]'::vector;

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
    exact_text  text;
    exact_max   bigint;
    owner_rows  bigint;
    go_exact    boolean := false;
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
    -- Checked by pattern, not by catching a failed cast: an EXCEPTION block would open a
    -- subtransaction on every search. 18 digits at most, so exact_max + 1 cannot overflow.
    exact_text := nullif(btrim(current_setting('vidx.exact_search_max_rows', true)), '');
    IF exact_text IS NULL THEN
        exact_max := 200000;
    ELSIF exact_text ~ '^-?[0-9]{1,18}$' THEN
        exact_max := exact_text::bigint;
    ELSE
        RAISE EXCEPTION 'vidx.exact_search_max_rows must be a whole number of scenes (at most 18 digits), got %',
            exact_text USING ERRCODE = 'invalid_parameter_value';
    END IF;
    label_json := CASE WHEN filter_label IS NULL THEN NULL
                       ELSE jsonb_build_array(jsonb_build_object('label', filter_label)) END;
    query_half := query_embedding::halfvec(512);

    IF exact_max > 0 THEN
        -- Counted on the owner_id btree and stopped at the bound: cheap for the small
        -- owners, at most exact_max + 1 index entries for the big ones.
        SELECT count(*) INTO owner_rows
        FROM (SELECT 1 FROM scenes s WHERE s.owner_id = filter_user_id LIMIT exact_max + 1) o;
        go_exact := owner_rows <= exact_max;
    END IF;

    IF NOT go_exact THEN
        -- Approximate: the halfvec HNSW index picks max(2 x match_count, 1000) candidates
        -- (owner/model/label filters applied during the iterative scan, whose relaxed
        -- order is only roughly nearest-first); the best match_count by exact distance
        -- are kept. Half precision also blurs distances in the 4th digit, where
        -- near-duplicate shots of one video differ: the spare candidates absorb that too.
        WITH nearest AS MATERIALIZED (
            SELECT s.id, s.embedding_visual_clip <=> query_embedding AS distance
            FROM scenes s
            WHERE s.owner_id = filter_user_id
              AND s.embedding_visual_clip IS NOT NULL
              AND (filter_model IS NULL OR s.embedding_model = filter_model)
              AND (label_json IS NULL OR s.labels @> label_json)
            ORDER BY s.embedding_visual_clip::halfvec(512) <=> query_half
            LIMIT greatest(match_count * 2, 1000)
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
            ) r;
            go_exact := available > n_found;  -- the index walk ended early
        END IF;
    END IF;

    IF go_exact THEN
        -- Exact search over this owner's rows (full precision; "+ 0" keeps the
        -- planner off any HNSW index).
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
