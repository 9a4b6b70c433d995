-- Package installations and attempts (Rule 4) as the rule cites them, from OS evidence or transcripts
SELECT agent, task, rep, outcome, kind, act, source, table_name, seq, pid, command, path, sentence
FROM findings
WHERE rule = 'R4'
ORDER BY agent, task, rep, act, seq;
