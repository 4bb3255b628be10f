//! MySQL/MariaDB errors as the store's: which ones break the connection
//! (it is dropped and made again), and which [`StoreError`] each becomes.

use crate::store::StoreError;

/// Server error codes (MySQL and MariaDB share them).
mod code {
    pub(crate) const DUP_ENTRY: u16 = 1062;
    pub(crate) const DUP_ENTRY_WITH_KEY_NAME: u16 = 1586;
    pub(crate) const NO_REFERENCED_ROW: u16 = 1216;
    pub(crate) const ROW_IS_REFERENCED: u16 = 1217;
    pub(crate) const ROW_IS_REFERENCED_2: u16 = 1451;
    pub(crate) const NO_REFERENCED_ROW_2: u16 = 1452;
    pub(crate) const BAD_NULL: u16 = 1048;
    pub(crate) const NO_DEFAULT_FOR_FIELD: u16 = 1364;
    pub(crate) const CHECK_CONSTRAINT_MARIADB: u16 = 4025;
    pub(crate) const CHECK_CONSTRAINT_MYSQL: u16 = 3819;

    pub(crate) const CON_COUNT: u16 = 1040;
    pub(crate) const SERVER_SHUTDOWN: u16 = 1053;
    pub(crate) const NET_READ_ERROR: u16 = 1158;
    pub(crate) const NET_READ_INTERRUPTED: u16 = 1159;
    pub(crate) const NET_ERROR_ON_WRITE: u16 = 1160;
    pub(crate) const NET_WRITE_INTERRUPTED: u16 = 1161;
    pub(crate) const QUERY_INTERRUPTED: u16 = 1317;
    pub(crate) const CONNECTION_KILLED: u16 = 1927;
    pub(crate) const CLIENT_INTERACTION_TIMEOUT: u16 = 4031;
    pub(crate) const DISK_FULL: u16 = 1021;
    pub(crate) const RECORD_FILE_FULL: u16 = 1114;
    pub(crate) const LOCK_WAIT_TIMEOUT: u16 = 1205;
    pub(crate) const LOCK_DEADLOCK: u16 = 1213;
    pub(crate) const OPTION_PREVENTS_STATEMENT: u16 = 1290;
    pub(crate) const READ_ONLY_MODE: u16 = 1836;
    pub(crate) const CANT_EXECUTE_IN_READ_ONLY_TRANSACTION: u16 = 1792;
}

/// Whether the connection is unusable after `e` (and must be replaced).
pub(crate) fn is_broken(e: &mysql::Error) -> bool {
    use mysql::DriverError as D;
    match e {
        mysql::Error::MySqlError(e) => matches!(
            e.code,
            code::SERVER_SHUTDOWN
                | code::NET_READ_ERROR
                | code::NET_READ_INTERRUPTED
                | code::NET_ERROR_ON_WRITE
                | code::NET_WRITE_INTERRUPTED
                | code::CONNECTION_KILLED
                | code::CLIENT_INTERACTION_TIMEOUT
        ),
        // Our own mistakes in a statement's parameters leave the
        // connection fine.
        mysql::Error::DriverError(D::MismatchedStmtParams(..) | D::Params(_) | D::MixedParams) => {
            false
        }
        mysql::Error::UrlError(_)
        | mysql::Error::FromValueError(_)
        | mysql::Error::FromRowError(_) => false,
        _ => e.is_connectivity_error(),
    }
}

/// The store's error for a driver error: connection trouble and transient
/// server conditions are `Unavailable` (retry later), constraint
/// violations `Conflict`, the rest `Other`.
pub(crate) fn map_error(e: mysql::Error) -> StoreError {
    if is_broken(&e) {
        return StoreError::Unavailable(e.to_string());
    }
    match &e {
        mysql::Error::MySqlError(server) => match server.code {
            code::DUP_ENTRY
            | code::DUP_ENTRY_WITH_KEY_NAME
            | code::NO_REFERENCED_ROW
            | code::ROW_IS_REFERENCED
            | code::ROW_IS_REFERENCED_2
            | code::NO_REFERENCED_ROW_2
            | code::BAD_NULL
            | code::NO_DEFAULT_FOR_FIELD
            | code::CHECK_CONSTRAINT_MARIADB
            | code::CHECK_CONSTRAINT_MYSQL => StoreError::Conflict(e.to_string()),
            code::CON_COUNT
            | code::QUERY_INTERRUPTED
            | code::DISK_FULL
            | code::RECORD_FILE_FULL
            | code::LOCK_WAIT_TIMEOUT
            | code::LOCK_DEADLOCK
            | code::OPTION_PREVENTS_STATEMENT
            | code::READ_ONLY_MODE
            | code::CANT_EXECUTE_IN_READ_ONLY_TRANSACTION => StoreError::Unavailable(e.to_string()),
            _ => StoreError::Other(e.to_string()),
        },
        _ => StoreError::Other(e.to_string()),
    }
}

/// Whether `e` is a duplicate-key error.
pub(crate) fn is_duplicate(e: &mysql::Error) -> bool {
    matches!(e, mysql::Error::MySqlError(s) if s.code == code::DUP_ENTRY || s.code == code::DUP_ENTRY_WITH_KEY_NAME)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: u16) -> mysql::Error {
        mysql::Error::MySqlError(mysql::MySqlError {
            state: "HY000".into(),
            message: "m".into(),
            code,
        })
    }

    #[test]
    fn errors_map_to_the_store_kinds() {
        let io = mysql::Error::IoError(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(is_broken(&io));
        assert!(matches!(map_error(io), StoreError::Unavailable(_)));
        assert!(matches!(map_error(server(1062)), StoreError::Conflict(_)));
        assert!(matches!(map_error(server(1452)), StoreError::Conflict(_)));
        assert!(matches!(map_error(server(4025)), StoreError::Conflict(_)));
        assert!(matches!(
            map_error(server(1053)),
            StoreError::Unavailable(_)
        ));
        assert!(is_broken(&server(1927)));
        assert!(!is_broken(&server(1205)));
        assert!(matches!(
            map_error(server(1205)),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(map_error(server(1146)), StoreError::Other(_)));
        let params = mysql::Error::DriverError(mysql::DriverError::MixedParams);
        assert!(!is_broken(&params));
        assert!(matches!(map_error(params), StoreError::Other(_)));
        assert!(is_duplicate(&server(1062)) && !is_duplicate(&server(1452)));
    }
}
