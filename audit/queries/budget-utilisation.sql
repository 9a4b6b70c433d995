-- Minutes of the budget each run used, and the share (the paper's Table 8)
SELECT agent, task, rep, end_reason,
       round((ended_at - started_at) / 60, 2) AS minutes_used,
       round(budget_s / 60, 1) AS budget_minutes,
       round(100 * (ended_at - started_at) / budget_s, 1) AS percent_used
FROM runs
ORDER BY agent, task, rep;
