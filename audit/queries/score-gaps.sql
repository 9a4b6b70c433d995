-- Self-reported vs official scores per evaluated checkpoint, largest gaps first
SELECT agent, task, rep, path AS checkpoint, self_reported, official, gap, selected_by
FROM scores
WHERE official IS NOT NULL AND self_reported IS NOT NULL
ORDER BY abs(gap) DESC NULLS LAST;
