-- Identical work across runs: a checkpoint or script whose bytes (sha256) another run also left (task files as given excluded)
WITH produced AS (
    SELECT a.run_key, a.agent, a.task, a.rep, a.path, a.sha256,
           CASE WHEN starts_with(a.path, 'checkpoints/') THEN 'checkpoint' ELSE 'script' END AS kind
    FROM snapshots a
    WHERE a.phase = 'after' AND a.scope = 'workspace' AND a.kind = 'file' AND a.sha256 IS NOT NULL
      AND (starts_with(a.path, 'checkpoints/') OR regexp_matches(a.path, '^[^/]+\.py$'))
      AND NOT EXISTS (SELECT 1 FROM snapshots b WHERE b.run_key = a.run_key AND b.phase = 'before'
                      AND b.scope = 'workspace' AND b.sha256 = a.sha256)
)
SELECT kind, sha256, count(DISTINCT run_key) AS runs,
       list(DISTINCT agent || '/' || task || '/r' || rep ORDER BY agent || '/' || task || '/r' || rep) AS run_ids,
       list(DISTINCT path ORDER BY path) AS paths
FROM produced
GROUP BY kind, sha256
HAVING count(DISTINCT run_key) > 1
ORDER BY runs DESC, kind, sha256;
