-- The commit a launch of a project from git runs (pinned when it is made).
ALTER TABLE launches ADD COLUMN git_commit TEXT;
