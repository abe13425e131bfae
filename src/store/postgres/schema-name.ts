/** A schema name the PostgreSQL store puts into SQL unquoted: lower-case letters, digits and `_`, room for `_queue` after it. */
export const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,39}$/;
