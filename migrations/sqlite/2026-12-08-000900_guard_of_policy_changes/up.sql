-- A policy change re-plans everyone as one blast, judged by the stricter of the guard of the
-- policy applied before it and its own: an edit that removes or loosens [blast_radius] and strips
-- access in the same step is still held. Each applied policy records its guard (the engine's
-- text form, 'off' without one; NULL when an earlier release applied it), and a staged change
-- records the guard it is judged by (NULL: the policy in force when it is decided).
ALTER TABLE engine_policy_applied ADD COLUMN guard TEXT;
ALTER TABLE engine_holds ADD COLUMN guard TEXT;
