-- Case-folded copies of a user's name and email, written by holdfast in
-- Rust (Unicode lowercase) on every insert and update, and searched in
-- place of LOWER(name), which SQLite applies to ASCII letters only: a
-- search for "émile" finds "ÉMILE" on every engine alike. Rows written
-- before this migration get their copies when the store next migrates.
ALTER TABLE users ADD COLUMN name_folded TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN email_folded TEXT NOT NULL DEFAULT '';
