-- Package installation attempts (Rule 4): pip, uv, conda, apt, npm ... install, per run
SELECT agent, task, rep, seq, pid, array_to_string(argv, ' ') AS command, cwd
FROM execs
WHERE NOT probe
  AND list_has_any(argv, ['install', 'add'])
  AND (list_has_any(argv, ['pip', 'pip3', 'uv', 'conda', 'mamba', 'apt', 'apt-get', 'npm', 'yarn', 'pnpm'])
       OR regexp_matches(path, '/(pip3?|uv|conda|mamba|apt|apt-get|npm|yarn|pnpm)$'))
ORDER BY agent, task, rep, seq;
