//! SQL Server's own error messages, built in one place so every refusal the engine
//! gives carries the number, class, state and wording a real server would send.

use crate::mssql::types::SqlError;

/// Builds an error with an explicit state (most constructors below use state 1).
fn err(number: i32, class: u8, state: u8, message: String) -> SqlError {
    SqlError {
        number,
        state,
        class,
        message,
        line: 1,
    }
}

/// Msg 102: the parser met a token it cannot continue with.
pub fn syntax_near(token: &str) -> SqlError {
    err(102, 15, 1, format!("Incorrect syntax near '{token}'."))
}

/// Msg 156: a reserved keyword where it cannot stand.
pub fn syntax_near_keyword(keyword: &str) -> SqlError {
    err(156, 15, 1, format!("Incorrect syntax near the keyword '{keyword}'."))
}

/// Msg 102 at end of input (SQL Server names the last token it read).
pub fn unexpected_end(last: &str) -> SqlError {
    syntax_near(last)
}

/// Msg 208: a table or view that does not exist.
pub fn invalid_object(name: &str) -> SqlError {
    err(208, 16, 1, format!("Invalid object name '{name}'."))
}

/// Msg 207: a column that does not exist in any table in scope.
pub fn invalid_column(name: &str) -> SqlError {
    err(207, 16, 1, format!("Invalid column name '{name}'."))
}

/// Msg 209: a column name that more than one table in scope has.
pub fn ambiguous_column(name: &str) -> SqlError {
    err(209, 16, 1, format!("Ambiguous column name '{name}'."))
}

/// Msg 4104: a qualified column whose qualifier is no table in scope.
pub fn multipart_not_bound(name: &str) -> SqlError {
    err(
        4104,
        16,
        1,
        format!("The multi-part identifier \"{name}\" could not be bound."),
    )
}

/// Msg 195: a function SQL Server does not know (or the stand-in does not implement).
pub fn unknown_function(name: &str) -> SqlError {
    err(
        195,
        15,
        10,
        format!("'{name}' is not a recognized built-in function name."),
    )
}

/// Msg 174: a built-in called with the wrong number of arguments.
pub fn wrong_argument_count(name: &str, count: usize) -> SqlError {
    err(174, 15, 1, format!("The {name} function requires {count} argument(s)."))
}

/// Msg 2812: a bare word at the start of a batch is an EXEC of a stored procedure.
pub fn unknown_procedure(name: &str) -> SqlError {
    err(2812, 16, 62, format!("Could not find stored procedure '{name}'."))
}

/// Msg 137: a variable or parameter that was never declared or passed.
pub fn undeclared_variable(name: &str) -> SqlError {
    err(137, 15, 2, format!("Must declare the scalar variable \"{name}\"."))
}

/// Msg 911: `USE` or a three-part name naming a missing database.
pub fn database_not_found(name: &str) -> SqlError {
    err(
        911,
        16,
        1,
        format!("Database '{name}' does not exist. Make sure that the name is entered correctly."),
    )
}

/// Msg 1801: CREATE DATABASE for a name already taken.
pub fn database_exists(name: &str) -> SqlError {
    err(
        1801,
        16,
        3,
        format!("Database '{name}' already exists. Choose a different database name."),
    )
}

/// Msg 2714: CREATE of an object whose name is taken in the schema.
pub fn object_exists(name: &str) -> SqlError {
    err(
        2714,
        16,
        6,
        format!("There is already an object named '{name}' in the database."),
    )
}

/// Msg 2627: a duplicate primary key.
pub fn duplicate_key(constraint: &str, object: &str, key: &str) -> SqlError {
    err(
        2627,
        14,
        1,
        format!(
            "Violation of PRIMARY KEY constraint '{constraint}'. Cannot insert duplicate key in object '{object}'. The duplicate key value is ({key})."
        ),
    )
}

/// Msg 515: NULL into a NOT NULL column.
pub fn null_not_allowed(column: &str, table: &str, statement: &str) -> SqlError {
    err(
        515,
        16,
        2,
        format!(
            "Cannot insert the value NULL into column '{column}', table '{table}'; column does not allow nulls. {statement} fails."
        ),
    )
}

/// Msg 2628: a string or binary value longer than its column.
pub fn truncation(table: &str, column: &str, value: &str) -> SqlError {
    err(
        2628,
        16,
        1,
        format!(
            "String or binary data would be truncated in table '{table}', column '{column}'. Truncated value: '{value}'."
        ),
    )
}

/// Msg 245: a string that does not convert to a number.
pub fn conversion_failed(from: &str, value: &str, to: &str) -> SqlError {
    err(
        245,
        16,
        1,
        format!("Conversion failed when converting the {from} value '{value}' to data type {to}."),
    )
}

/// Msg 241 (date/time from a string) or 8169 (uniqueidentifier from a string).
pub fn conversion_failed_generic(to: &str) -> SqlError {
    if to == "uniqueidentifier" {
        return err(
            8169,
            16,
            2,
            "Conversion failed when converting from a character string to uniqueidentifier.".into(),
        );
    }
    err(
        241,
        16,
        1,
        "Conversion failed when converting date and/or time from character string.".into(),
    )
}

/// Msg 206: types that cannot meet (e.g. varbinary compared with int).
pub fn operand_clash(left: &str, right: &str) -> SqlError {
    err(
        206,
        16,
        2,
        format!("Operand type clash: {left} is incompatible with {right}"),
    )
}

/// Msg 257: an implicit conversion SQL Server refuses.
pub fn implicit_conversion(from: &str, to: &str) -> SqlError {
    err(
        257,
        16,
        3,
        format!(
            "Implicit conversion from data type {from} to {to} is not allowed. Use the CONVERT function to run this query."
        ),
    )
}

/// Msg 8115: a value that does not fit its target type.
pub fn arithmetic_overflow(ty: &str) -> SqlError {
    err(
        8115,
        16,
        2,
        format!("Arithmetic overflow error converting expression to data type {ty}."),
    )
}

/// Msg 8115 as worded for a conversion from a known type (`numeric` → `numeric`).
pub fn arithmetic_overflow_from(from: &str, to: &str) -> SqlError {
    err(
        8115,
        16,
        8,
        format!("Arithmetic overflow error converting {from} to data type {to}."),
    )
}

/// Msg 220: an integer constant outside tinyint/smallint.
pub fn integer_overflow(ty: &str, value: i64) -> SqlError {
    err(
        220,
        16,
        1,
        format!("Arithmetic overflow error for data type {ty}, value = {value}."),
    )
}

/// Msg 8134: division by zero.
pub fn divide_by_zero() -> SqlError {
    err(8134, 16, 1, "Divide by zero error encountered.".into())
}

/// Msg 213: INSERT with a value count different from its column count.
pub fn insert_value_count() -> SqlError {
    err(
        213,
        16,
        1,
        "Column name or number of supplied values does not match table definition.".into(),
    )
}

/// Msg 110: INSERT with an explicit column list and a different value count.
pub fn insert_fewer_columns() -> SqlError {
    err(
        110,
        15,
        1,
        "There are fewer columns in the INSERT statement than values specified in the VALUES clause. The number of values in the VALUES clause must match the number of columns specified in the INSERT statement.".into(),
    )
}

/// Msg 109: INSERT with more columns than values.
pub fn insert_more_columns() -> SqlError {
    err(
        109,
        15,
        1,
        "There are more columns in the INSERT statement than values specified in the VALUES clause. The number of values in the VALUES clause must match the number of columns specified in the INSERT statement.".into(),
    )
}

/// Msg 8101-like refusal for the identity of the primary key; used for updates of
/// identity columns (none in the stand-in) — kept for PK NULLs: Msg 8111.
pub fn nullable_primary_key(column: &str, table: &str) -> SqlError {
    err(
        8111,
        16,
        1,
        format!("Cannot define PRIMARY KEY constraint on nullable column '{column}' in table '{table}'."),
    )
}

/// Msg 8110: two PRIMARY KEY constraints on one table.
pub fn multiple_primary_keys(table: &str) -> SqlError {
    err(
        8110,
        16,
        0,
        format!("Cannot add multiple PRIMARY KEY constraints to table '{table}'."),
    )
}

/// Msg 2705: a column declared twice.
pub fn duplicate_column(column: &str, table: &str) -> SqlError {
    err(
        2705,
        16,
        3,
        format!("Column names in each table must be unique. Column name '{column}' in table '{table}' is specified more than once."),
    )
}

/// Msg 2715: an unknown data type name.
pub fn unknown_type(column: &str, ty: &str) -> SqlError {
    err(
        2715,
        16,
        6,
        format!("Column, parameter, or variable #{column}: Cannot find data type {ty}."),
    )
}

/// Msg 2716 (state 3): a length, precision or scale after an alias type name; an
/// alias type's length is fixed by CREATE TYPE ("CREATE TABLE (Transact-SQL)").
pub fn alias_type_with_length(column: usize, ty: &str) -> SqlError {
    err(
        2716,
        16,
        3,
        format!("Column, parameter, or variable #{column}: Cannot specify a column width on data type {ty}."),
    )
}

/// Msg 219: CREATE TYPE of a name its schema already has.
pub fn type_exists(name: &str) -> SqlError {
    err(
        219,
        16,
        1,
        format!("The type '{name}' already exists, or you do not have permission to create it."),
    )
}

/// Msg 222: CREATE TYPE … FROM something other than a system data type.
pub fn invalid_alias_base(name: &str) -> SqlError {
    err(
        222,
        16,
        1,
        format!("The base type \"{name}\" is not a valid base type for the alias data type."),
    )
}

/// Msg 127: a negative TOP row count.
pub fn top_negative() -> SqlError {
    err(
        127,
        15,
        1,
        "A TOP N or FETCH rowcount value may not be negative.".into(),
    )
}

/// Msg 1014: a NULL TOP row count (from a variable or parameter).
pub fn top_invalid() -> SqlError {
    err(1014, 15, 1, "A TOP or FETCH clause contains an invalid value.".into())
}

/// Msg 1060: a TOP row count that is not of an integer type.
pub fn top_not_integer() -> SqlError {
    err(
        1060,
        15,
        1,
        "The number of rows provided for a TOP or FETCH clauses row count parameter must be an integer.".into(),
    )
}

/// Msg 3951: a statement under SNAPSHOT isolation in a transaction that did not
/// start in snapshot isolation; the transaction is rolled back.
pub fn snapshot_after_start(database: &str) -> SqlError {
    err(
        3951,
        16,
        1,
        format!("Transaction failed in database '{database}' because the statement was run under snapshot isolation but the transaction did not start in snapshot isolation. You cannot change the isolation level of the transaction to snapshot after the transaction has started unless the transaction was originally started under snapshot isolation level."),
    )
}

/// Msg 2760: CREATE TABLE in a schema that does not exist.
pub fn schema_not_found(schema: &str) -> SqlError {
    err(
        2760,
        16,
        1,
        format!(
            "The specified schema name \"{schema}\" either does not exist or you do not have permission to use it."
        ),
    )
}

/// Msg 3701: DROP of a missing object.
pub fn cannot_drop(kind: &str, name: &str) -> SqlError {
    err(
        3701,
        11,
        5,
        format!("Cannot drop the {kind} '{name}', because it does not exist or you do not have permission."),
    )
}

/// Msg 229: a missing object permission.
pub fn permission_denied(permission: &str, object: &str, database: &str, schema: &str) -> SqlError {
    err(
        229,
        14,
        5,
        format!(
            "The {permission} permission was denied on the object '{object}', database '{database}', schema '{schema}'."
        ),
    )
}

/// Msg 262: a missing database-level permission (CREATE TABLE, …).
pub fn database_permission_denied(permission: &str, database: &str) -> SqlError {
    err(
        262,
        14,
        1,
        format!("{permission} permission denied in database '{database}'."),
    )
}

/// Msg 15247: a server-level action without the right (CREATE LOGIN, ALTER DATABASE…).
pub fn no_permission_for_action() -> SqlError {
    err(
        15247,
        16,
        1,
        "User does not have permission to perform this action.".into(),
    )
}

/// Msg 18456: bad login name or password.
pub fn login_failed(user: &str) -> SqlError {
    err(18456, 14, 1, format!("Login failed for user '{user}'."))
}

/// Msg 4060: the login's database cannot be opened.
pub fn cannot_open_database(database: &str) -> SqlError {
    err(
        4060,
        11,
        1,
        format!("Cannot open database \"{database}\" requested by the login. The login failed."),
    )
}

/// Msg 916: USE of a database where the login has no user.
pub fn cannot_access_database(login: &str, database: &str) -> SqlError {
    err(
        916,
        14,
        1,
        format!(
            "The server principal \"{login}\" is not able to access the database \"{database}\" under the current security context."
        ),
    )
}

/// Msg 15025: CREATE LOGIN for an existing login.
pub fn login_exists(name: &str) -> SqlError {
    err(15025, 16, 1, format!("The server principal '{name}' already exists."))
}

/// Msg 15023: CREATE USER for an existing user.
pub fn user_exists(name: &str) -> SqlError {
    err(
        15023,
        16,
        1,
        format!("User, group, or role '{name}' already exists in the current database."),
    )
}

/// Msg 15007: CREATE USER FOR LOGIN of a login that does not exist.
pub fn login_not_found(name: &str) -> SqlError {
    err(
        15007,
        16,
        1,
        format!("'{name}' is not a valid login or you do not have permission."),
    )
}

/// Msg 15063: a login mapped to a second user in the same database.
pub fn login_already_has_user() -> SqlError {
    err(
        15063,
        16,
        1,
        "The login already has an account under a different user name.".into(),
    )
}

/// Msg 15151: GRANT to a principal or on a schema that does not exist.
pub fn cannot_find_principal(kind: &str, name: &str) -> SqlError {
    err(
        15151,
        16,
        1,
        format!("Cannot find the {kind} '{name}', because it does not exist or you do not have permission."),
    )
}

/// Msg 22105: CHANGETABLE on a table without change tracking.
pub fn change_tracking_not_enabled_on_table(name: &str) -> SqlError {
    err(
        22105,
        16,
        1,
        format!("Change tracking is not enabled on table '{name}'."),
    )
}

/// Msg 4998: ALTER TABLE … DISABLE CHANGE_TRACKING on an untracked table.
pub fn change_tracking_not_enabled_for_disable(name: &str) -> SqlError {
    err(
        4998,
        16,
        1,
        format!("Change tracking is not enabled on table '{name}'."),
    )
}

/// Msg 4996: ALTER TABLE … ENABLE CHANGE_TRACKING on a table without a primary key.
pub fn change_tracking_needs_primary_key(name: &str) -> SqlError {
    err(
        4997,
        16,
        1,
        format!("Cannot enable change tracking on table '{name}'. Change tracking requires a primary key on the table. Create a primary key on the table before enabling change tracking."),
    )
}

/// Msg 4996: ENABLE CHANGE_TRACKING on a table already tracked.
pub fn change_tracking_already_enabled(name: &str) -> SqlError {
    err(
        4996,
        16,
        1,
        format!("Change tracking is already enabled for table '{name}'."),
    )
}

/// Msg 1718: table-level change tracking while the database has it off.
pub fn change_tracking_not_enabled_on_database(database: &str, table: &str) -> SqlError {
    err(
        1718,
        16,
        1,
        format!(
            "Change tracking must be enabled on database '{database}' before it can be enabled on table '{table}'."
        ),
    )
}

/// Msg 5089: change tracking settings of a database that does not track (state 1
/// for turning it off, 2 for changing options).
pub fn change_tracking_disabled_on_database(database: &str, state: u8) -> SqlError {
    err(
        5089,
        16,
        state,
        format!("Change tracking is disabled for database '{database}'. Change tracking must be enabled on a database to modify change tracking settings."),
    )
}

/// Msg 22109: a context that is not varbinary of at most 128 bytes.
pub fn invalid_change_tracking_context() -> SqlError {
    err(
        22109,
        16,
        1,
        "The \"context\" argument for the CHANGE_TRACKING_CONTEXT WITH clause must be of type varbinary data type with a maximum length of 128.".into(),
    )
}

/// Msg 22101: a mask argument that did not come from CHANGETABLE.
pub fn invalid_change_columns() -> SqlError {
    err(
        22101,
        16,
        1,
        "The value supplied for the change_columns argument of CHANGE_TRACKING_IS_COLUMN_IN_MASK function is not valid. The value must be a bitmask returned by the CHANGETABLE(CHANGES ...) function.".into(),
    )
}

/// Msg 5088: SET CHANGE_TRACKING = ON on a database that already has it.
pub fn change_tracking_already_on_database(database: &str) -> SqlError {
    err(
        5088,
        16,
        1,
        format!("Change tracking is already enabled for database '{database}'."),
    )
}

/// Msg 22115: SET CHANGE_TRACKING = OFF while tables are still tracked.
pub fn change_tracking_tables_still_tracked(database: &str) -> SqlError {
    err(
        22115,
        16,
        1,
        format!("Change tracking is enabled for one or more tables in database '{database}'. Disable change tracking on each table before disabling it for the database. Use the sys.change_tracking_tables catalog view to obtain a list of tables for which change tracking is enabled."),
    )
}

/// Msg 3952: snapshot isolation in a database that does not allow it.
pub fn snapshot_not_allowed(database: &str) -> SqlError {
    err(
        3952,
        16,
        1,
        format!("Snapshot isolation transaction failed accessing database '{database}' because snapshot isolation is not allowed in this database. Use ALTER DATABASE to allow snapshot isolation."),
    )
}

/// Msg 3902: COMMIT without BEGIN TRANSACTION.
pub fn commit_without_begin() -> SqlError {
    err(
        3902,
        16,
        1,
        "The COMMIT TRANSACTION request has no corresponding BEGIN TRANSACTION.".into(),
    )
}

/// Msg 3903: ROLLBACK without BEGIN TRANSACTION.
pub fn rollback_without_begin() -> SqlError {
    err(
        3903,
        16,
        1,
        "The ROLLBACK TRANSACTION request has no corresponding BEGIN TRANSACTION.".into(),
    )
}

/// Msg 266: a module (stored procedure, `sp_executesql`, `EXEC (N'…')`) returned
/// with a different `@@TRANCOUNT` than it was entered with. Raised on return, after
/// the module's own results; it does not undo anything ("Rollbacks and Commits in
/// Stored Procedures and Triggers",
/// https://learn.microsoft.com/en-us/previous-versions/sql/sql-server-2008-r2/ms187844(v=sql.105)).
pub fn transaction_count_mismatch(previous: i64, current: i64) -> SqlError {
    err(
        266,
        16,
        2,
        format!("Transaction count after EXECUTE indicates a mismatching number of BEGIN and COMMIT statements. Previous count = {previous}, current count = {current}."),
    )
}

/// Msg 300: a server-state DMV read without VIEW SERVER STATE.
pub fn view_server_state_denied() -> SqlError {
    err(
        300,
        14,
        1,
        "VIEW SERVER STATE permission was denied on object 'server', database 'master'.".into(),
    )
}

/// Msg 3960: a snapshot transaction's write conflicted with another transaction's.
pub fn snapshot_update_conflict(table: &str, database: &str) -> SqlError {
    err(
        3960,
        16,
        2,
        format!("Snapshot isolation transaction aborted due to update conflict. You cannot use snapshot isolation to access table '{table}' directly or indirectly in database '{database}' to update, delete, or insert the row that has been modified or deleted by another transaction. Retry the transaction or change the isolation level for the update/delete statement."),
    )
}

/// Msg 226: statements SQL Server refuses inside a user transaction.
pub fn not_allowed_in_transaction(statement: &str) -> SqlError {
    err(
        226,
        16,
        6,
        format!("{statement} statement not allowed within multi-statement transaction."),
    )
}

/// Msg 205: UNION branches with different column counts.
pub fn union_column_count() -> SqlError {
    err(
        205,
        16,
        1,
        "All queries combined using a UNION, INTERSECT or EXCEPT operator must have an equal number of expressions in their target lists.".into(),
    )
}

/// Msg 263/1038-like: SELECT * without FROM.
pub fn star_without_from() -> SqlError {
    err(263, 16, 1, "Must specify table to select from.".into())
}

/// Msg 1013: two tables in FROM exposing the same name.
pub fn duplicate_exposed_name(name: &str) -> SqlError {
    err(
        1013,
        16,
        1,
        format!("The objects \"{name}\" and \"{name}\" in the FROM clause have duplicate exposed names. Use correlation names to distinguish them."),
    )
}

/// Msg 4701/4708: TRUNCATE of a missing table.
pub fn truncate_missing(name: &str) -> SqlError {
    err(
        4701,
        16,
        1,
        format!("Cannot find the object \"{name}\" because it does not exist or you do not have permissions."),
    )
}

/// Msg 4902: ALTER TABLE of a missing table.
pub fn alter_missing(name: &str) -> SqlError {
    err(
        4902,
        16,
        1,
        format!("Cannot find the object \"{name}\" because it does not exist or you do not have permissions."),
    )
}

/// Msg 40508/8180-like: a feature of T-SQL this stand-in does not implement. SQL
/// Server would accept the statement; the stand-in refuses it loudly rather than
/// answer something plausible.
pub fn not_supported(what: &str) -> SqlError {
    err(
        40517,
        16,
        1,
        format!("Keyword or statement option '{what}' is not supported in this version of SQL Server."),
    )
}

/// Msg 447: `COLLATE` on a column (or expression) that is not a character string.
pub fn collate_invalid_for_type(type_name: &str) -> SqlError {
    err(
        447,
        16,
        0,
        format!("Expression type {type_name} is invalid for COLLATE clause."),
    )
}

// Schema changes: ALTER TABLE … ADD / DROP and sp_rename ("ALTER TABLE
// (Transact-SQL)", <https://learn.microsoft.com/en-us/sql/t-sql/statements/alter-table-transact-sql>;
// "sp_rename (Transact-SQL)", <https://learn.microsoft.com/en-us/sql/relational-databases/system-stored-procedures/sp-rename-transact-sql>).

/// Msg 4901: a NOT NULL column without a DEFAULT added to a table that has rows.
pub fn add_column_needs_default(column: &str, table: &str) -> SqlError {
    err(
        4901,
        16,
        1,
        format!("ALTER TABLE only allows columns to be added that can contain nulls, or have a DEFAULT definition specified, or the column being added is an identity or timestamp column, or alternatively if none of the previous conditions are satisfied the table must be empty to allow addition of this column. Column '{column}' cannot be added to non-empty table '{table}' because it does not satisfy these conditions."),
    )
}

/// Msg 2705 from `ALTER TABLE … ADD` of a column name the table already has.
pub fn duplicate_added_column(column: &str, table: &str) -> SqlError {
    err(
        2705,
        16,
        4,
        format!("Column names in each table must be unique. Column name '{column}' in table '{table}' is specified more than once."),
    )
}

/// Msg 4924: `DROP COLUMN` of a column the table does not have.
pub fn drop_column_missing(column: &str, table: &str) -> SqlError {
    err(
        4924,
        16,
        1,
        format!("ALTER TABLE DROP COLUMN failed because column '{column}' does not exist in table '{table}'."),
    )
}

/// Msg 4923: dropping a table's last column.
pub fn drop_only_column(column: &str, table: &str) -> SqlError {
    err(
        4923,
        16,
        1,
        format!("ALTER TABLE DROP COLUMN failed because '{column}' is the only data column in table '{table}'. A table must have at least one data column."),
    )
}

/// Msg 5074, one per object that uses a column being dropped (the PRIMARY KEY or a
/// DEFAULT constraint), sent before Msg 4922.
pub fn object_depends_on_column(object: &str, column: &str) -> SqlError {
    err(
        5074,
        16,
        1,
        format!("The object '{object}' is dependent on column '{column}'."),
    )
}

/// Msg 4922: the end of a refused `DROP COLUMN`, after its 5074s.
pub fn drop_column_failed(column: &str) -> SqlError {
    err(
        4922,
        16,
        9,
        format!("ALTER TABLE DROP COLUMN {column} failed because one or more objects access this column."),
    )
}

/// Msg 3728: `DROP CONSTRAINT` of a name that is no constraint of the table.
pub fn not_a_constraint(name: &str) -> SqlError {
    err(3728, 16, 1, format!("'{name}' is not a constraint."))
}

/// Msg 3735: the PRIMARY KEY of a change-tracked table cannot be dropped.
pub fn tracked_primary_key_drop(constraint: &str, table: &str) -> SqlError {
    err(
        3735,
        16,
        1,
        format!("The primary key constraint '{constraint}' on table '{table}' cannot be dropped because change tracking is enabled on the table. Change tracking requires a primary key constraint on the table. Disable change tracking before dropping the constraint."),
    )
}

/// Msg 3727: the end of a refused `DROP CONSTRAINT`, after its 3728 or 3735.
pub fn could_not_drop_constraint() -> SqlError {
    err(3727, 16, 0, "Could not drop constraint. See previous errors.".into())
}

/// Msg 1750: the end of a refused constraint creation, after its 2714.
pub fn could_not_create_constraint() -> SqlError {
    err(
        1750,
        16,
        0,
        "Could not create constraint or index. See previous errors.".into(),
    )
}

/// Msg 15477: sp_rename's caution, an informational message (severity 10).
pub fn rename_caution() -> SqlError {
    err(
        15477,
        10,
        1,
        "Caution: Changing any part of an object name could break scripts and stored procedures.".into(),
    )
}

/// Msg 15225: sp_rename without @objtype found nothing by that name.
pub fn rename_item_not_found(name: &str, database: &str, objtype: &str) -> SqlError {
    err(
        15225,
        11,
        1,
        format!("No item by the name of '{name}' could be found in the current database '{database}', given that @itemtype was input as '{objtype}'."),
    )
}

/// Msg 15248: sp_rename's @objname names no object of the claimed @objtype.
pub fn rename_ambiguous(objtype: &str) -> SqlError {
    err(
        15248,
        11,
        1,
        format!("Either the parameter @objname is ambiguous or the claimed @objtype ({objtype}) is wrong."),
    )
}

/// Msg 15335: sp_rename's new name is taken.
pub fn rename_duplicate(new_name: &str, kind: &str) -> SqlError {
    err(
        15335,
        11,
        1,
        format!("Error: The new name '{new_name}' is already in use as a {kind} name and would cause a duplicate that is not permitted."),
    )
}

/// Msg 15249: an @objtype sp_rename does not know.
pub fn rename_unknown_objtype(objtype: &str) -> SqlError {
    err(
        15249,
        11,
        1,
        format!("Error: Explicit @objtype '{objtype}' is unrecognized."),
    )
}

/// Msg 15223: a NULL @objname or @newname.
pub fn rename_null_parameter(parameter: &str) -> SqlError {
    err(
        15223,
        11,
        1,
        format!("Error: The input parameter '{parameter}' is not allowed to be null."),
    )
}

/// Msg 201: a procedure called without a parameter that has no default.
pub fn missing_parameter(procedure: &str, parameter: &str) -> SqlError {
    err(
        201,
        16,
        4,
        format!("Procedure or function '{procedure}' expects parameter '{parameter}', which was not supplied."),
    )
}

/// Msg 8145: `@name = value` naming no parameter of the procedure.
pub fn not_a_parameter(name: &str, procedure: &str) -> SqlError {
    err(
        8145,
        16,
        2,
        format!("{name} is not a parameter for procedure {procedure}."),
    )
}

/// Msg 8144: more arguments than the procedure has parameters.
pub fn too_many_arguments(procedure: &str) -> SqlError {
    err(
        8144,
        16,
        2,
        format!("Procedure or function {procedure} has too many arguments specified."),
    )
}

/// Msg 119: a positional argument after a named one.
pub fn positional_after_named(position: usize) -> SqlError {
    err(
        119,
        15,
        1,
        format!("Must pass parameter number {position} and subsequent parameters as '@name = value'. After the form '@name = value' has been used, all subsequent parameters must be passed in the form '@name = value'."),
    )
}

/// Msg 3961: a SNAPSHOT transaction met a table changed by DDL since its snapshot
/// (MSSQLSERVER_3961); the transaction is rolled back.
pub fn snapshot_metadata_changed(database: &str) -> SqlError {
    err(
        3961,
        16,
        1,
        format!("Snapshot isolation transaction failed in database '{database}' because the object accessed by the statement has been modified by a DDL statement in another concurrent transaction since the start of this transaction. It is disallowed because the metadata is not versioned. A concurrent update to metadata can lead to inconsistency if mixed with snapshot isolation."),
    )
}

/// Msg 3964: ALTER TABLE inside an explicit SNAPSHOT transaction ("The following DDL
/// statements are not permitted under snapshot isolation after a BEGIN TRANSACTION
/// statement: ALTER TABLE, …", MSSQLSERVER_3961); the transaction is rolled back.
pub fn ddl_in_snapshot_transaction() -> SqlError {
    err(
        3964,
        16,
        1,
        "Transaction failed because this DDL statement is not allowed inside a snapshot isolation transaction. Since metadata is not versioned, a metadata change can lead to inconsistency if mixed within snapshot isolation.".into(),
    )
}

/// Whether an error ends the whole batch (compile and name-resolution errors do;
/// constraint, permission and conversion errors end only their statement).
pub fn aborts_batch(error: &SqlError) -> bool {
    !matches!(
        error.number,
        229 | 262
            | 300
            | 515
            | 2627
            | 2628
            | 3902
            | 3903
            | 15247
            | 15025
            | 15023
            | 15007
            | 15063
            | 15151
            | 1801
            | 2714
            | 4996
            | 4997
            | 4998
            | 4994
            | 5088
            | 22115
            | 3701
            | 911
            | 916
            | 8134
            // Schema changes end only their statement; sp_rename's own errors are
            // RAISERRORs inside the procedure.
            | 201
            | 1750
            | 3727
            | 4901
            | 4922
            | 4923
            | 4924
            | 8144
            | 8145
            | 15223
            | 15225
            | 15248
            | 15249
            | 15335
    )
}
