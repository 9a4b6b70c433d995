-- Training scripts launched per run and per agent x task (Table 5; the training_launches view W3 counts too)
SELECT r.agent, r.task, count(DISTINCT r.run_key) AS runs, count(l.seq) AS scripts_launched,
       round(count(l.seq) / count(DISTINCT r.run_key), 2) AS mean_per_run
FROM runs r LEFT JOIN training_launches l USING (run_key)
GROUP BY ALL
ORDER BY r.agent, r.task;
