-- Every form sent back with errors keeps its values here, not only the
-- launch form; `form` says which one they belong to.
ALTER TABLE launch_drafts RENAME TO form_drafts;
ALTER TABLE form_drafts RENAME COLUMN request TO body;
ALTER TABLE form_drafts ADD COLUMN form TEXT NOT NULL DEFAULT 'launch';
