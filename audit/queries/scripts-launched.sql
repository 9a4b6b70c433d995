-- Training scripts launched per run and per agent x task (the paper's Table 5 column)
WITH launches AS (
    SELECT e.agent, e.task, e.rep, e.run_key
    FROM execs e JOIN runs r USING (run_key)
    WHERE NOT e.probe
      AND regexp_matches(e.path, '/python[0-9.]*$')
      AND len(list_filter(e.argv, lambda a: regexp_matches(a, '(^|/)(run_[^/]*|train[^/]*)\.py$'))) > 0
      AND e.mono <= r.deadline_mono
)
SELECT agent, task, count(DISTINCT run_key) AS runs, count(*) AS scripts_launched,
       round(count(*) / count(DISTINCT run_key), 2) AS mean_per_run
FROM launches
GROUP BY ALL
ORDER BY agent, task;
