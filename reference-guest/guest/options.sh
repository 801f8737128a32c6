# Options of the aero reference guest's selftest (sourced by selftest.sh).
#
# The flag names are the Windows guest's (aero-virtio-selftest.exe). The words come from the
# build (AERO_GUEST_ARGS in selftest.conf) and then from fw_cfg; a later value wins. Unknown
# words are reported and ignored; a bad value or a conflicting pair (as the Windows guest has
# them) is a usage error: the run reports it and ends with RESULT|FAIL.

OPT_HTTP_URL=http://10.0.2.2:18080/aero-virtio-selftest
OPT_UDP_PORT=18081
OPT_DNS_HOST=host.lan
OPT_BLK_ROOT=
OPT_LOG_FILE=
OPT_IO_SIZE_MIB=8
OPT_IO_CHUNK_KIB=1024
OPT_NET_TIMEOUT_SEC=120
OPT_HOST_WAIT_SEC= # reference guest only: the deadline of every host-coordinated test
USAGE_ERRORS=0
FWCFG_COUNT=0

# variable -> flag, for the booleans (the first flag is the one CONFIG and messages use)
BOOL_FLAGS='
DISABLE_SND --disable-snd
DISABLE_SND_CAPTURE --disable-snd-capture
REQUIRE_SND --require-snd
REQUIRE_SND_CAPTURE --require-snd-capture
TEST_SND_CAPTURE --test-snd-capture
REQUIRE_NON_SILENCE --require-non-silence
REQUIRE_SND_MSIX --require-snd-msix
TEST_SND_BUFFER_LIMITS --test-snd-buffer-limits
ALLOW_SND_TRANSITIONAL --allow-virtio-snd-transitional
TEST_INPUT_EVENTS --test-input-events
TEST_INPUT_MODIFIERS --test-input-events-modifiers
TEST_INPUT_BUTTONS --test-input-events-buttons
TEST_INPUT_WHEEL --test-input-events-wheel
TEST_INPUT_MEDIA_KEYS --test-input-media-keys
TEST_INPUT_TABLET_EVENTS --test-input-tablet-events
TEST_INPUT_LED --test-input-led
REQUIRE_INPUT_MSIX --require-input-msix
TEST_NET_LINK_FLAP --test-net-link-flap
REQUIRE_NET_MSIX --require-net-msix
TEST_BLK_RESIZE --test-blk-resize
TEST_BLK_RESET --test-blk-reset
EXPECT_BLK_MSI --expect-blk-msi
ALLOW_TRANSITIONAL --allow-transitional
'
for _v in $BOOL_FLAGS; do
	case "$_v" in
		--*) ;;
		*) eval "$_v=0" ;;
	esac
done

# fwcfg_args: the words of QEMU's -fw_cfg name=opt/org.aero/selftest-args (none when absent)
fwcfg_args() {
	[ -r "$FWCFG_ARGS" ] || return 0
	tr '\000\r\n\t' '    ' < "$FWCFG_ARGS"
}

usage_error() {
	say "reference-guest: $*"
	USAGE_ERRORS=$((USAGE_ERRORS + 1))
}

# is_uint VALUE: decimal digits only
is_uint() {
	case "$1" in
		'' | *[!0-9]*) return 1 ;;
	esac
	[ "${#1}" -le 9 ]
}

# set_http_url URL: OPT_HTTP_URL and its parts (host, port, path) for the raw HTTP POST
set_http_url() {
	local rest hostport
	case "$1" in
		http://?*) ;;
		*)
			usage_error "--http-url $1: must be http://HOST[:PORT]/PATH"
			return
			;;
	esac
	case "$1" in
		*[!A-Za-z0-9._~:/@!\$\&\(\)*+,\;=%-]*)
			usage_error "--http-url: unsupported characters (no query, fragment, blanks, quotes or bars)"
			return
			;;
	esac
	rest=${1#http://}
	hostport=${rest%%/*}
	case "$rest" in
		*/*) AERO_HTTP_PATH=/${rest#*/} ;;
		*) AERO_HTTP_PATH=/ ;;
	esac
	AERO_HTTP_HOST=${hostport%%:*}
	AERO_HTTP_PORT=80
	case "$hostport" in
		*:*) AERO_HTTP_PORT=${hostport#*:} ;;
	esac
	if [ -z "$AERO_HTTP_HOST" ] || ! is_uint "$AERO_HTTP_PORT" || [ "$AERO_HTTP_PORT" -lt 1 ] \
		|| [ "$AERO_HTTP_PORT" -gt 65535 ]; then
		usage_error "--http-url $1: bad host or port"
		return
	fi
	OPT_HTTP_URL=$1
	# The Windows guest appends "-large" before a query or fragment; there is none here.
	OPT_HTTP_URL_LARGE=$1-large
}
OPT_HTTP_URL_LARGE=$OPT_HTTP_URL-large
AERO_HTTP_HOST=10.0.2.2
AERO_HTTP_PORT=18080
AERO_HTTP_PATH=/aero-virtio-selftest

# opt_parse WORD...: apply the words in order
opt_parse() {
	local a v
	while [ $# -gt 0 ]; do
		a=$1
		shift
		case "$a" in
			--http-url | --udp-port | --dns-host | --blk-root | --log-file | --io-size-mib | --io-chunk-kib | --net-timeout-sec | --host-wait-sec)
				if [ $# -eq 0 ]; then
					usage_error "missing value for $a"
					continue
				fi
				v=$1
				shift
				case "$a" in
					--http-url) set_http_url "$v" ;;
					--udp-port)
						if is_uint "$v" && [ "$v" -ge 1 ] && [ "$v" -le 65535 ]; then
							OPT_UDP_PORT=$((v + 0))
						else
							usage_error "--udp-port $v: must be 1..65535"
						fi
						;;
					--dns-host)
						case "$v" in
							'' | *[!A-Za-z0-9.-]*) usage_error "--dns-host $v: not a host name" ;;
							*) OPT_DNS_HOST=$v ;;
						esac
						;;
					--blk-root) OPT_BLK_ROOT=$v ;;
					--log-file) OPT_LOG_FILE=$v ;;
					--io-size-mib)
						if is_uint "$v" && [ "$v" -ge 1 ] && [ "$v" -le 32 ]; then
							OPT_IO_SIZE_MIB=$((v + 0))
						else
							usage_error "--io-size-mib $v: the reference guest's volume takes 1..32"
						fi
						;;
					--io-chunk-kib)
						if is_uint "$v"; then
							OPT_IO_CHUNK_KIB=$((v + 0))
							[ "$OPT_IO_CHUNK_KIB" -gt 0 ] || OPT_IO_CHUNK_KIB=1
						else
							usage_error "--io-chunk-kib $v: not a number"
						fi
						;;
					--host-wait-sec)
						if is_uint "$v" && [ "$v" -ge 1 ] && [ "$v" -le 600 ]; then
							OPT_HOST_WAIT_SEC=$((v + 0))
						else
							usage_error "--host-wait-sec $v: must be 1..600"
						fi
						;;
					--net-timeout-sec)
						if is_uint "$v"; then
							OPT_NET_TIMEOUT_SEC=$((v + 0))
						else
							usage_error "--net-timeout-sec $v: not a number"
						fi
						;;
				esac
				;;
			--test-snd) REQUIRE_SND=1 ;;
			--test-tablet-events) TEST_INPUT_TABLET_EVENTS=1 ;;
			--test-input-leds) TEST_INPUT_LED=1 ;;
			--test-input-events-extended)
				TEST_INPUT_EVENTS=1 TEST_INPUT_MODIFIERS=1 TEST_INPUT_BUTTONS=1 TEST_INPUT_WHEEL=1
				;;
			--test-input-events-modifiers) TEST_INPUT_EVENTS=1 TEST_INPUT_MODIFIERS=1 ;;
			--test-input-events-buttons) TEST_INPUT_EVENTS=1 TEST_INPUT_BUTTONS=1 ;;
			--test-input-events-wheel) TEST_INPUT_EVENTS=1 TEST_INPUT_WHEEL=1 ;;
			--*)
				v=$(opt_var "$a")
				if [ -n "$v" ]; then
					eval "$v=1"
				else
					say "reference-guest: unknown arg: $(clean "$a")"
				fi
				;;
			'') ;;
			*) say "reference-guest: unknown arg: $(clean "$a")" ;;
		esac
	done
}

# host_wait_ms DEFAULT_MS: how long a host-coordinated test waits for the host after READY
host_wait_ms() {
	if [ -n "$OPT_HOST_WAIT_SEC" ]; then
		echo $((OPT_HOST_WAIT_SEC * 1000))
	else
		echo "$1"
	fi
}

# opt_var FLAG: the variable of a boolean flag (empty when unknown)
opt_var() {
	local v f
	set -- $BOOL_FLAGS "$1"
	eval "f=\${$#}"
	while [ $# -gt 2 ]; do
		v=$1 && [ "$2" = "$f" ] && echo "$v" && return
		shift 2
	done
}

# opt_flag VAR: the flag of a boolean variable
opt_flag() {
	set -- $BOOL_FLAGS "$1"
	local want
	eval "want=\${$#}"
	while [ $# -gt 2 ]; do
		[ "$1" = "$want" ] && echo "$2" && return
		shift 2
	done
}

# opt_check: the Windows guest's conflicting pairs
opt_check() {
	local v
	if [ "$DISABLE_SND" = 1 ]; then
		for v in REQUIRE_SND REQUIRE_SND_MSIX REQUIRE_SND_CAPTURE TEST_SND_CAPTURE TEST_SND_BUFFER_LIMITS REQUIRE_NON_SILENCE; do
			eval "[ \"\$$v\" = 1 ]" && usage_error "--disable-snd cannot be combined with $(opt_flag "$v")"
		done
	fi
	if [ "$DISABLE_SND_CAPTURE" = 1 ]; then
		for v in REQUIRE_SND_CAPTURE TEST_SND_CAPTURE REQUIRE_NON_SILENCE; do
			eval "[ \"\$$v\" = 1 ]" && usage_error "--disable-snd-capture cannot be combined with $(opt_flag "$v")"
		done
	fi
	return 0
}

# opt_active: "flag_name=1" for each boolean that is set, apart from the ones CONFIG always has
opt_active() {
	local f
	set -- $BOOL_FLAGS
	while [ $# -gt 1 ]; do
		case "$1" in
			EXPECT_BLK_MSI | REQUIRE_NET_MSIX | REQUIRE_INPUT_MSIX | REQUIRE_SND_MSIX | TEST_NET_LINK_FLAP) ;;
			*)
				if eval "[ \"\$$1\" = 1 ]"; then
					f=${2#--}
					echo "${f//-/_}=1"
				fi
				;;
		esac
		shift 2
	done
	[ "$OPT_NET_TIMEOUT_SEC" = 120 ] || echo "net_timeout_sec=$OPT_NET_TIMEOUT_SEC"
	[ "$OPT_IO_SIZE_MIB" = 8 ] || echo "io_size_mib=$OPT_IO_SIZE_MIB"
	[ -z "$OPT_HOST_WAIT_SEC" ] || echo "host_wait_sec=$OPT_HOST_WAIT_SEC"
}

# opt_dump: every option, for the dry run
opt_dump() {
	local v val
	for v in OPT_HTTP_URL OPT_HTTP_URL_LARGE AERO_HTTP_HOST AERO_HTTP_PORT AERO_HTTP_PATH OPT_UDP_PORT OPT_DNS_HOST \
		OPT_BLK_ROOT OPT_LOG_FILE OPT_IO_SIZE_MIB OPT_IO_CHUNK_KIB OPT_NET_TIMEOUT_SEC OPT_HOST_WAIT_SEC USAGE_ERRORS FWCFG_COUNT $BOOL_FLAGS; do
		case "$v" in
			--*) continue ;;
		esac
		eval "val=\$$v"
		echo "opt $v=$val"
	done
}
