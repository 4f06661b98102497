-- A user's incidents of one kind: a plan that keeps a leaver's disabled account for its records
-- asks whether a `records_kept` incident was ever raised about the user (`incidents::
-- connectors_raised_for`), on every later plan of that user.
CREATE INDEX engine_incidents_user_kind_idx ON engine_incidents (user_id, kind);
