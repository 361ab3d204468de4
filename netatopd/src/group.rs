//! --socket-group: a group number, or a name looked up in /etc/group.

use std::fs;

use anyhow::{bail, Context, Result};

/// Where group names are read from.
const GROUP_FILE: &str = "/etc/group";

/// The gid of `group`: a number, or a name in /etc/group. Names are read
/// from the file itself, not through the C library's name services: the
/// release build is static, and a static program cannot load their
/// modules (LDAP, systemd's dynamic groups...); such a group is given by
/// its number.
pub fn resolve_group(group: &str) -> Result<u32> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let text = fs::read_to_string(GROUP_FILE)
        .with_context(|| format!("--socket-group {group}: cannot read {GROUP_FILE}"))?;
    match gid_in(&text, group) {
        Some(gid) => Ok(gid),
        None => bail!(
            "--socket-group: no group named {group:?} in {GROUP_FILE} (groups of other \
             sources, such as LDAP, are not looked up: give its number)"
        ),
    }
}

/// The gid of group `name` in the text of a group file (lines of
/// "name:password:gid:members").
fn gid_in(text: &str, name: &str) -> Option<u32> {
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        fields.nth(1)?.trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::gid_in;

    #[test]
    fn a_group_file_gives_the_gid_of_a_name() {
        let text = "root:x:0:\nadm:x:4:syslog,alice\n# not a group\nmonitoring:x:998:\nbad:x:\n";
        assert_eq!(gid_in(text, "adm"), Some(4));
        assert_eq!(gid_in(text, "monitoring"), Some(998));
        assert_eq!(gid_in(text, "root"), Some(0));
        assert_eq!(gid_in(text, "mon"), None);
        assert_eq!(gid_in(text, "bad"), None);
        assert_eq!(gid_in(text, "# not a group"), None);
    }
}
