-- Case-folded copies of a user's name and email, written by holdfast in
-- Rust (Unicode lowercase) on every insert and update, and searched in
-- place of LOWER(name), so that every engine folds case the same way.
-- Rows written before this migration get their copies when the store next
-- migrates. Keep equivalent to ../sqlite and ../postgres. (Lowercasing
-- can lengthen a text, hence the wider columns.)
ALTER TABLE users ADD COLUMN name_folded VARCHAR(400) NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN email_folded VARCHAR(1000) NOT NULL DEFAULT '';
