-- A step's last test keeps the input it was tested with (its settings with
-- their expressions evaluated), shown beside its output.
ALTER TABLE step_samples ADD COLUMN input TEXT NOT NULL DEFAULT '';
