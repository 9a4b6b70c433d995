-- Runs that are not accepted, with the rules and the first cited act behind each verdict
SELECT v.agent, v.task, v.rep, v.status, array_to_string(v.disqualified_by, ', ') AS rules,
       v.reasons[1] AS first_reason
FROM verdicts v
WHERE v.status <> 'accepted'
ORDER BY v.status, v.agent, v.task, v.rep;
