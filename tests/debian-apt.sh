#!/bin/bash
# tests/debian-apt.sh: a private apt configuration for packages of other
# Debian releases (trixie's atop, the kernels the VM tests boot), sourced by
# the scripts that download them. Nothing is written under /etc/apt: the
# sources list, package lists, caches and dpkg status of this configuration
# live in a directory of the build tree, and it is used by passing
# APT_CONFIG to apt-get and apt-cache.
#
# The mirror URIs and keyring are the machine's own: they are read from the
# enabled Debian source of this machine's release in /etc/apt (deb822
# .sources files, else one-line .list files), so no host name is written
# here.
#
#   . tests/debian-apt.sh
#   debian_apt_init DIR SUITE...   # e.g. trixie bullseye-security; exports APT_CONFIG
#                                  # (DEBIAN_APT_ARCHITECTURES="amd64 arm64": the
#                                  # package lists of those architectures; else
#                                  # the machine's own)
#   debian_apt_update              # refreshes the lists (skipped if fresh)
#   apt-get download atop/trixie   # any apt command, with the private config
#   debian_mirror                  # prints "URI KEYRING" of the main archive
#   debian_apt_installing          # the same configuration, for installing
#                                  # into this machine (its own dpkg status)

# Prints the machine's Debian codename (bookworm on Debian 12).
debian_codename() {
    local codename=
    [ -r /etc/os-release ] && codename=$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")
    [ -n "$codename" ] || { printf 'debian-apt: no VERSION_CODENAME in /etc/os-release\n' >&2; return 1; }
    printf '%s\n' "$codename"
}

# Prints "URIS<TAB>KEYRING" for the first enabled deb source of SUITE in
# the machine's configuration, KEYRING being the Signed-By path (empty when
# none or when the key is embedded).
_debian_source_of() {
    local want=$1 f
    local -a deb822=() oneline=()
    for f in /etc/apt/sources.list.d/*.sources; do [ -f "$f" ] && deb822+=("$f"); done
    [ -f /etc/apt/sources.list ] && oneline+=(/etc/apt/sources.list)
    for f in /etc/apt/sources.list.d/*.list; do [ -f "$f" ] && oneline+=("$f"); done
    if [ ${#deb822[@]} -gt 0 ]; then
        awk -v want="$want" '
            function flush(   n, s, i) {
                if (!found && types ~ /(^|[ \t])deb([ \t]|$)/ && enabled !~ /^(no|false|0)$/) {
                    n = split(suites, s, /[ \t]+/)
                    for (i = 1; i <= n; i++)
                        if (s[i] == want && uris != "") {
                            printf "%s\t%s\n", uris, (signed ~ /^\// ? signed : "")
                            found = 1
                        }
                }
                types = uris = suites = signed = enabled = ""
            }
            /^#/ { next }
            /^[ \t]*$/ { flush(); next }
            /^[ \t]/ { next }   # continuation lines: an embedded key
            {
                key = tolower($0); sub(/:.*/, "", key)
                val = $0; sub(/^[^:]*:[ \t]*/, "", val); sub(/[ \t]+$/, "", val)
                if (key == "types") types = val
                else if (key == "uris") uris = val
                else if (key == "suites") suites = val
                else if (key == "enabled") enabled = tolower(val)
                else if (key == "signed-by") signed = val
            }
            END { flush() }
        ' "${deb822[@]}" | head -n1
    fi
    if [ ${#oneline[@]} -gt 0 ]; then
        awk -v want="$want" '
            /^[ \t]*deb[ \t]/ {
                line = $0; sub(/#.*/, "", line); opts = ""
                if (match(line, /\[[^]]*\]/)) {
                    opts = substr(line, RSTART + 1, RLENGTH - 2)
                    line = substr(line, 1, RSTART - 1) " " substr(line, RSTART + RLENGTH)
                }
                n = split(line, w, /[ \t]+/); j = 0
                for (i = 1; i <= n; i++) if (w[i] != "") v[++j] = w[i]
                if (j >= 3 && v[3] == want) {
                    key = ""
                    if (match(opts, /signed-by=[^ \t]+/)) key = substr(opts, RSTART + 10, RLENGTH - 10)
                    printf "%s\t%s\n", v[2], key
                    exit
                }
            }
        ' "${oneline[@]}" | head -n1
    fi
}

# Prints "URI KEYRING" of the machine's main Debian archive (the source of
# its own release); KEYRING falls back to Debian's archive keyring.
debian_mirror() {
    local codename line uri key
    codename=$(debian_codename) || return 1
    line=$(_debian_source_of "$codename" | head -n1)
    [ -n "$line" ] || { printf 'debian-apt: no enabled Debian %s source in /etc/apt\n' "$codename" >&2; return 1; }
    uri=${line%%$'\t'*}; uri=${uri%% *}
    key=${line#*$'\t'}
    [ -n "$key" ] || key=/usr/share/keyrings/debian-archive-keyring.gpg
    printf '%s %s\n' "$uri" "$key"
}

# debian_apt_init DIR SUITE...: writes the private configuration into DIR
# for the given suites and those it had already (a suite ending in -security takes the URI of the
# machine's security source, any other the main archive's) and exports
# APT_CONFIG.
debian_apt_init() {
    local dir=$1; shift
    local codename main sec suite uri key line
    codename=$(debian_codename) || return 1
    mkdir -p -- "$dir"
    dir=$(cd -- "$dir" && pwd -P)
    mkdir -p -- "$dir/lists/partial" "$dir/cache/archives/partial" "$dir/sources.list.d" \
        "$dir/preferences.d" "$dir/state"
    : >"$dir/state/status"
    # Suites asked for earlier stay, so that scripts sharing DIR do not
    # invalidate each other's lists.
    if [ -f "$dir/sources.list.d/debian.sources" ]; then
        set -- "$@" $(sed -n 's/^Suites: //p' "$dir/sources.list.d/debian.sources")
    fi
    set -- $(printf '%s\n' "$@" | sort -u)
    main=$(_debian_source_of "$codename")
    sec=$(_debian_source_of "$codename-security")
    [ -n "$main" ] || { printf 'debian-apt: no enabled Debian %s source in /etc/apt\n' "$codename" >&2; return 1; }
    {
        printf '# Private to the netatopd tests (tests/debian-apt.sh).\n'
        for suite in "$@"; do
            line=$main
            if [[ $suite == *-security ]]; then
                [ -n "$sec" ] || { printf 'debian-apt: no %s-security source to take the security URI from\n' "$codename" >&2; return 1; }
                line=$sec
            fi
            uri=${line%%$'\t'*}
            key=${line#*$'\t'}
            [ -n "$key" ] || key=/usr/share/keyrings/debian-archive-keyring.gpg
            printf '\nTypes: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: %s\n' "$uri" "$suite" "$key"
        done
    } >"$dir/sources.list.d/debian.sources.new"
    if ! cmp -s "$dir/sources.list.d/debian.sources.new" "$dir/sources.list.d/debian.sources"; then
        mv -f -- "$dir/sources.list.d/debian.sources.new" "$dir/sources.list.d/debian.sources"
        rm -f -- "$dir/updated"
    else
        rm -f -- "$dir/sources.list.d/debian.sources.new"
    fi
    # Every directory apt reads or writes, this configuration's own; the
    # machine's apt.conf.d (proxies and the like) still applies.
    cat >"$dir/apt.conf.new" <<EOF
Dir::Etc::SourceList "/dev/null";
Dir::Etc::SourceParts "$dir/sources.list.d";
Dir::Etc::Preferences "/dev/null";
Dir::Etc::PreferencesParts "$dir/preferences.d";
Dir::State "$dir/state";
Dir::State::Lists "$dir/lists";
Dir::State::status "$dir/state/status";
Dir::Cache "$dir/cache";
Dir::Cache::Archives "$dir/cache/archives";
APT::Sandbox::User "root";
Acquire::Languages "none";
EOF
    # Other architectures' packages, to download and unpack (never to
    # install: the machine's dpkg architectures stay as they are).
    if [ -n "${DEBIAN_APT_ARCHITECTURES:-}" ]; then
        printf 'APT::Architectures { %s};\n' \
            "$(printf '"%s"; ' $DEBIAN_APT_ARCHITECTURES)" >>"$dir/apt.conf.new"
    fi
    # Lists fetched under another configuration are fetched again.
    if ! cmp -s "$dir/apt.conf.new" "$dir/apt.conf"; then
        mv -f -- "$dir/apt.conf.new" "$dir/apt.conf"
        rm -f -- "$dir/updated"
    else
        rm -f -- "$dir/apt.conf.new"
    fi
    export APT_CONFIG=$dir/apt.conf
    DEBIAN_APT_DIR=$dir
}

# Refreshes the private lists unless they were refreshed in the last 6 hours.
debian_apt_update() {
    local stamp=$DEBIAN_APT_DIR/updated
    if [ -f "$stamp" ] && [ -n "$(find "$stamp" -mmin -360)" ]; then
        return 0
    fi
    apt-get -q update >&2 || { printf 'debian-apt: apt-get update (private configuration) failed\n' >&2; return 1; }
    touch -- "$stamp"
}

# Switches the private configuration (debian_apt_init) to installing into
# this machine: the machine's dpkg status and apt's record of automatically
# installed packages, the private sources and lists. Installing packages is
# what `make test` does anyway; the machine's sources stay untouched.
debian_apt_installing() {
    {
        printf '#include "%s";\n' "$DEBIAN_APT_DIR/apt.conf"
        printf 'Dir::State::status "/var/lib/dpkg/status";\n'
        printf 'Dir::State::extended_states "/var/lib/apt/extended_states";\n'
    } >"$DEBIAN_APT_DIR/install.conf"
    export APT_CONFIG=$DEBIAN_APT_DIR/install.conf
}
