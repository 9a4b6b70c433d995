-- Attempts to reach a non-loopback address (Rule 3), with the process that made them
SELECT agent, task, rep, seq, pid, syscall, family, address, port, array_to_string(argv, ' ') AS command
FROM net_attempts
ORDER BY agent, task, rep, seq;
