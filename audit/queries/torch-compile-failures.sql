-- Checkpoints that failed official loading because torch.compile prefixed their keys with _orig_mod. (Appendix C)
SELECT agent, task, rep, path AS checkpoint, self_reported, detail
FROM scores
WHERE failure = 'orig_mod_prefix'
ORDER BY agent, task, rep, path;
