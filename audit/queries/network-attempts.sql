-- Attempts to reach the network (Rule 3) as the rule cites them, from OS evidence or transcripts
SELECT f.agent, f.task, f.rep, f.act, f.source, f.table_name, f.seq, f.pid, n.syscall, n.family, n.address, n.port,
       f.command, f.sentence
FROM findings f
LEFT JOIN net_attempts n ON f.table_name = 'net_attempts' AND n.run_key = f.run_key AND n.seq = f.seq
WHERE f.rule = 'R3'
ORDER BY f.agent, f.task, f.rep, f.act, f.seq;
