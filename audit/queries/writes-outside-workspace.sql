-- File changes outside the workspace and the run's scratch dirs (Rule 5)
SELECT agent, task, rep, seq, root, event, path
FROM file_events
WHERE root NOT IN ('workspace', 'scratch')
  AND event IN ('create', 'modify', 'close_write', 'delete', 'moved_from', 'moved_to', 'attrib', 'rescan_found')
ORDER BY agent, task, rep, seq;
