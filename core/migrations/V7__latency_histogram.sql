-- Latency distribution per usage row, so the control API can answer percentiles (p95) and not
-- only the mean. See docs/architecture.md, "Latency histograms".
--
-- A fixed-bucket histogram: `latency_histogram[i]` counts requests whose total latency lies in
-- [bound(i-1), bound(i)) with the upper bounds in ms given by tollgate_latency_bounds_ms()
-- (bound(0) = 0; the last element counts everything from the last bound up). Counts per fixed
-- bucket add: merging two histograms is element-wise addition, which is associative and
-- commutative and exact in integers, so metering's upsert (adding exactly the rows it inserted)
-- and the hourly roll-up (a sum over the hour's minutes) keep it exact, like request_count.
-- Rows written before this migration have an all-zero histogram: they carry no distribution
-- and percentiles are computed over the histogram's own count.

-- The upper bounds in ms; the Rust side (tollgate_core::latency) holds the same list and a test
-- compares the two. Changing them means a new migration that rewrites stored histograms.
CREATE FUNCTION tollgate_latency_bounds_ms() RETURNS int8[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT '{1,2,3,5,7,10,15,20,30,50,75,100,150,200,300,500,750,1000,1500,2000,3000,5000,10000,30000,60000,120000,300000,600000}'::int8[]
$$;

-- 1-based histogram slot of a latency in µs (one more slot than bounds: the overflow). For
-- integers, latency_us < 1000 * bound exactly when latency_us / 1000 (truncated) < bound.
CREATE FUNCTION tollgate_latency_slot(latency_us int8) RETURNS int4
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT width_bucket(latency_us / 1000, tollgate_latency_bounds_ms()) + 1
$$;

-- A histogram holding `n` in `slot` and zero elsewhere.
CREATE FUNCTION tollgate_latency_histogram_of(slot int4, n int8) RETURNS int8[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT array_agg(CASE WHEN i = slot THEN n ELSE 0 END ORDER BY i)
      FROM generate_series(1, cardinality(tollgate_latency_bounds_ms()) + 1) AS i
$$;

-- Element-wise sum of two histograms of the same length.
CREATE FUNCTION tollgate_latency_histogram_add(a int8[], b int8[]) RETURNS int8[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT array_agg(x + y ORDER BY i) FROM unnest(a, b) WITH ORDINALITY AS t(x, y, i)
$$;

-- sum() for histograms. STRICT transition without an initial value: the first histogram is the
-- start state, NULLs are skipped, no rows give NULL.
CREATE AGGREGATE tollgate_latency_histogram_sum(int8[]) (
    SFUNC = tollgate_latency_histogram_add,
    STYPE = int8[],
    COMBINEFUNC = tollgate_latency_histogram_add,
    PARALLEL = SAFE
);

ALTER TABLE usage_minute
    ADD COLUMN latency_histogram int8[] NOT NULL
        DEFAULT array_fill(0::int8, ARRAY[29])
        CONSTRAINT usage_minute_latency_histogram_shape
        CHECK (cardinality(latency_histogram) = 29 AND array_ndims(latency_histogram) = 1);
ALTER TABLE usage_hour
    ADD COLUMN latency_histogram int8[] NOT NULL
        DEFAULT array_fill(0::int8, ARRAY[29])
        CONSTRAINT usage_hour_latency_histogram_shape
        CHECK (cardinality(latency_histogram) = 29 AND array_ndims(latency_histogram) = 1);
