-- 0008_queues: settings held per queue. One row per queue that has any;
-- a queue without a row runs as it always did.
--
-- skipq: compatible (older workers never read the table: they do not
-- honour a pause, and claim from a paused queue as before)
--
-- queue        the queue's name, as jobs carry it
-- paused       no worker claims from the queue while true
-- paused_kinds kinds paused within the queue: no worker claims jobs of
--              these kinds from it (the rest of the queue runs)
-- paused_at    when the queue or a kind in it was last paused
-- paused_by    the role that paused it (session_user)
-- updated_at   the row's last change
CREATE TABLE IF NOT EXISTS skipq.queues (
    queue        text PRIMARY KEY CHECK (octet_length(queue) BETWEEN 1 AND 200),
    paused       boolean NOT NULL DEFAULT false,
    paused_kinds text[] NOT NULL DEFAULT '{}',
    paused_at    timestamptz,
    paused_by    text,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
