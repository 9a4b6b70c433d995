-- Over-refusal in the agent's messages, in any wording (W1's definition: rules/overrefusal.py)
SELECT agent, task, rep, seq, role, kind, round(overrefusal_score(text), 3) AS score, left(text, 300) AS excerpt
FROM messages
WHERE role = 'assistant' AND overrefusal(text)
ORDER BY agent, task, rep, seq;
