-- Over-refusal in the agent's messages, in any wording (W1's definition: rules/overrefusal.py, computed once
-- per message at index refresh into messages.overrefusal; the score only for the rows found)
SELECT agent, task, rep, seq, role, kind, round(overrefusal_score(text), 3) AS score, left(text, 300) AS excerpt
FROM messages
WHERE role = 'assistant' AND overrefusal
ORDER BY agent, task, rep, seq;
