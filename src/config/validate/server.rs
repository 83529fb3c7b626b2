//! Validation of `[server]` and `[admin]`.

use super::*;

impl Validator<'_> {
    /// `[admin]`: both files are required; the token file must hold one non-empty line
    /// and must not be readable or writable by every user (it is a credential).
    pub(in crate::config) fn admin(
        &mut self,
        a: &raw::RawAdmin,
        base: &Path,
    ) -> Option<AdminSettings> {
        let (Some(token_file), Some(state_file)) = (&a.token_file, &a.state_file) else {
            for (k, v) in [("token_file", &a.token_file), ("state_file", &a.state_file)] {
                if v.is_none() {
                    self.err(&["admin", k], format!("[admin] needs {k}"));
                }
            }
            return None;
        };
        let path = base.join(token_file);
        let token = self.secret_file(&["admin", "token_file"], &path, "the admin token")?;
        let state_path = base.join(state_file);
        let state_dir = state_path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !state_dir.is_dir() {
            // Found now rather than at the first change, in the middle of an incident.
            self.err(
                &["admin", "state_file"],
                format!(
                    "directory {} does not exist (overrides could not be saved)",
                    state_dir.display()
                ),
            );
            return None;
        }
        Some(AdminSettings {
            token_file: path,
            state_file: state_path,
            token,
        })
    }

    /// Reads a credential file: one non-empty line without spaces, not accessible to
    /// every user.
    pub(in crate::config) fn secret_file(
        &mut self,
        key: &[&str],
        path: &Path,
        what: &str,
    ) -> Option<Secret> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) => {
                self.err(key, format!("cannot read {}: {e}", path.display()));
                return None;
            }
        };
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o007 != 0 {
            self.err(
                key,
                format!(
                    "{} is accessible to every user (mode {mode:04o}); it holds {what}: chmod o-rwx it (e.g. chmod 600)",
                    path.display()
                ),
            );
            return None;
        }
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                self.err(key, format!("cannot read {}: {e}", path.display()));
                return None;
            }
        };
        let token = text.trim_end_matches(['\n', '\r']);
        if token.is_empty() || token.contains(char::is_whitespace) {
            self.err(
                key,
                format!(
                    "{} must hold {what} on one line, without spaces",
                    path.display()
                ),
            );
            return None;
        }
        Some(Secret::new(token.to_string()))
    }

    pub(in crate::config) fn server(&mut self, s: &raw::RawServer, base: &Path) -> ServerSettings {
        let mut dns_listen = Vec::new();
        let listen = s
            .dns_listen
            .clone()
            .unwrap_or_else(|| vec!["127.0.0.1:5353".into()]);
        if listen.is_empty() {
            self.err(&["server", "dns_listen"], "at least one address is needed");
        }
        for (i, a) in listen.iter().enumerate() {
            match a.parse::<SocketAddr>() {
                Ok(sa) => dns_listen.push(sa),
                Err(_) => self.err(
                    &["server", "dns_listen", &i.to_string()],
                    format!("invalid address {a:?} (expected IP:PORT, e.g. \"127.0.0.1:53\" or \"[::1]:53\")"),
                ),
            }
        }
        let http_listen = match s.http_listen.as_deref() {
            None => Some(SocketAddr::from(([127, 0, 0, 1], 9153))),
            Some("") => None,
            Some(a) => match a.parse::<SocketAddr>() {
                Ok(sa) => Some(sa),
                Err(_) => {
                    self.err(
                        &["server", "http_listen"],
                        format!("invalid address {a:?} (expected IP:PORT)"),
                    );
                    None
                }
            },
        };
        let max_udp_payload = s.max_udp_payload.unwrap_or(1232);
        if !(512..=4096).contains(&max_udp_payload) {
            self.err(
                &["server", "max_udp_payload"],
                "must be between 512 and 4096",
            );
        }
        let tcp_max_connections = s.tcp_max_connections.unwrap_or(1024);
        if tcp_max_connections == 0 {
            self.err(&["server", "tcp_max_connections"], "must be at least 1");
        }
        let answer_cache_kib = s.answer_cache_kib.unwrap_or(1024);
        if answer_cache_kib > MAX_ANSWER_CACHE_KIB {
            self.err(
                &["server", "answer_cache_kib"],
                format!("must be at most {MAX_ANSWER_CACHE_KIB} (1 GiB per UDP socket)"),
            );
        }
        ServerSettings {
            start: StartSettings {
                dns_listen,
                http_listen,
                tcp_idle_timeout: self.duration(
                    &["server", "tcp_idle_timeout"],
                    s.tcp_idle_timeout.as_deref(),
                    Duration::from_secs(10),
                ),
                tcp_max_connections: tcp_max_connections.max(1),
                udp_sockets: s.udp_sockets.unwrap_or(0),
            },
            live: LiveSettings {
                // `""` means no GeoIP, as `http_listen = ""` means no admin HTTP.
                geoip_db: s
                    .geoip_db
                    .as_ref()
                    .filter(|p| !p.is_empty())
                    .map(|p| base.join(p)),
                max_udp_payload: max_udp_payload.clamp(512, 4096),
                answer_cache_bytes: answer_cache_kib.min(MAX_ANSWER_CACHE_KIB) as usize * 1024,
                reload_settle: self.duration(
                    &["server", "reload_settle"],
                    s.reload_settle.as_deref(),
                    Duration::from_millis(500),
                ),
            },
        }
    }
}
