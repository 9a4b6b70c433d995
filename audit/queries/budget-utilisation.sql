-- Minutes of the budget each run used, and the share (Table 8; the budget_use view the leaderboard reads)
SELECT r.agent, r.task, r.rep, r.end_reason,
       round(b.used_s / 60, 2) AS minutes_used,
       round(b.budget_s / 60, 1) AS budget_minutes,
       b.percent_used
FROM runs r LEFT JOIN budget_use b USING (run_key)
ORDER BY r.agent, r.task, r.rep;
