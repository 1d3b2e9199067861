-- Hydrations outlive their job runs: each run attaches as a session (kept
-- in the document), the read lease is held through the first hydration
-- only, and `completed` is gone. What happens to each existing state:
-- - pending, snapshot, catching_up: unchanged. They keep their read lease
--   until they first go live. A run in flight must attach before its next
--   report (a report without a session's token is refused, 409).
-- - live: stays live. sluice releases its read lease at the next batch on
--   its table (a refresh, any lease command); from then on it keeps a pin
--   of its own, and the next refresh makes it live or lagging by its lag.
-- - completed: becomes a live copy with no session (its lease was released
--   already), no longer ended; its lag moves again from the next refresh.
-- - failed, cancelled, superseded, stale: unchanged (they have ended).
UPDATE hydrations
SET state = 'live',
    doc = (doc::jsonb || '{"state": "live", "ended_at": null, "reason": null}'::jsonb)::text
WHERE state = 'completed';
