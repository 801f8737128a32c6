#!/bin/sh
# Selftest of the aero reference guest (busybox sh).
#
# Does what the Windows guest's aero-virtio-selftest.exe does, as far as Linux can measure it,
# and reports on COM1 in its vocabulary: CRLF lines
#   AERO_VIRTIO_SELFTEST|START|version=1
#   AERO_VIRTIO_SELFTEST|CONFIG|key=value...
#   AERO_VIRTIO_SELFTEST|TEST|<name>|<PASS|FAIL|SKIP|INFO|READY>[|word]|key=value...
#   AERO_VIRTIO_SELFTEST|RESULT|<PASS|FAIL>
# plus free-text lines ("virtio-net: ...") like the Windows guest's log.
#
# Options use the Windows guest's flag names. They come from the build
# (/etc/aero/selftest.conf) and then from QEMU's fw_cfg file opt/org.aero/selftest-args.
#
# Dry run (on a build host, for the tests): AERO_SELFTEST_DRY=1 parses the options, prints
# START/CONFIG (and the verdict of a usage error) on stdout, then "opt NAME=VALUE" lines.

AERO_LIB=${AERO_LIB:-/usr/share/aero}
CONF=${AERO_SELFTEST_CONF:-/etc/aero/selftest.conf}
FWCFG_ARGS=${AERO_SELFTEST_FWCFG:-/sys/firmware/qemu_fw_cfg/by_name/opt/org.aero/selftest-args/raw}
DRY=${AERO_SELFTEST_DRY:-0}

. "$CONF"
. "$AERO_LIB/options.sh"

SERIAL=/dev/ttyS0
LOG=/run/aero/selftest.log
W=/run/aero/work
PATTERN=$AERO_LIB/pattern-1m.bin
PATTERN_BYTES=1048576
PATTERN_FNV1A64=0x8505ae4435522325
TONE=$AERO_LIB/tone.wav
BLK_MOUNT=/mnt/blk

if [ "$DRY" = 1 ]; then
	W=${TMPDIR:-/tmp}/aero-dry.$$
	LOG=$W/selftest.log
	mkdir -p "$W"
	exec 3>&1
else
	mkdir -p "$W"
	if [ -c "$SERIAL" ]; then
		stty -F "$SERIAL" 115200 raw -echo 2> /dev/null
		exec 3> "$SERIAL"
	else
		exec 3> /dev/console
	fi
fi
: > "$LOG"

# emit FIELD... : one record, CRLF-terminated, in a single write.
emit() {
	local line=AERO_VIRTIO_SELFTEST f
	for f in "$@"; do
		line="$line|$f"
	done
	printf '%s\r\n' "$line" >&3
	printf '%s\n' "$line" >> "$LOG"
}

# say TEXT...: a free-text line (the Windows guest logs these to COM1 too).
say() {
	printf '%s\r\n' "$*" >&3
	printf '%s\n' "$*" >> "$LOG"
}

# clean TEXT: a field value (one line, no '|', at most 160 characters).
clean() {
	printf '%s' "$*" | tr '\r\n\t|' '   /' | tr -s ' ' | sed 's/^ //; s/ $//' | cut -c1-160
}

# now: seconds since boot (10 ms resolution); now_ms: the same in milliseconds, without a fork.
now() {
	local up rest
	read -r up rest < /proc/uptime
	echo "$up"
}
now_ms() {
	local up rest
	read -r up rest < /proc/uptime
	echo $((${up%.*} * 1000 + (1${up#*.} - 100) * 10))
}

# mbps BYTES T0 T1
mbps() {
	awk -v b="$1" -v a="$2" -v z="$3" 'BEGIN { d = z - a; if (d < 0.01) d = 0.01; printf "%.2f", b / 1048576 / d }'
}

# secs T0 T1 / secs_ms MS
secs() {
	awk -v a="$1" -v z="$2" 'BEGIN { printf "%.2f", z - a }'
}
secs_ms() {
	awk -v m="$1" 'BEGIN { printf "%.2f", m / 1000 }'
}

# wait_until TENTHS COMMAND...: poll COMMAND every 0.1 s.
wait_until() {
	local n=$1
	shift
	while ! "$@"; do
		n=$((n - 1))
		[ "$n" -gt 0 ] || return 1
		usleep 100000
	done
}

# load_modules LIST: insmod each path of LIST; prints the ones that failed.
load_modules() {
	local m failed=
	while read -r m; do
		[ -n "$m" ] || continue
		insmod "$m" 2>> "$W/insmod.err" || failed="$failed ${m##*/}"
	done < "$1"
	echo "$failed"
}

# b01 VALUE: 1 if VALUE is 1, else 0
b01() {
	[ "$1" = 1 ] && echo 1 || echo 0
}

ALL_OK=1
fail_result() {
	ALL_OK=0
}

# ---------------------------------------------------------------- main

emit START version=1
insmod_failed=
if [ "$DRY" != 1 ]; then
	insmod_failed=$(load_modules /etc/aero/modules.base)
fi

# The options are blank-separated words, never globbed.
set -f
FWCFG_WORDS=$(fwcfg_args)
# shellcheck disable=SC2086
set -- $FWCFG_WORDS
FWCFG_COUNT=$#
# shellcheck disable=SC2086
opt_parse $AERO_GUEST_ARGS $FWCFG_WORDS
opt_check
set +f

# The sound driver binds before the PCI report (its interrupt mode shows there), when there is a
# sound device to bind and the run does not disable it.
if [ "$DRY" != 1 ] && [ "$DISABLE_SND" != 1 ] && grep -qx 0x0019 /sys/bus/virtio/devices/*/device 2> /dev/null; then
	snd_insmod_failed=$(load_modules /etc/aero/modules.snd)
	[ -z "$snd_insmod_failed" ] || insmod_failed="$insmod_failed$snd_insmod_failed"
fi

emit CONFIG "http_url=$OPT_HTTP_URL" "http_url_large=$OPT_HTTP_URL_LARGE" "udp_port=$OPT_UDP_PORT" \
	"dns_host=$OPT_DNS_HOST" "blk_root=${OPT_BLK_ROOT:+$(clean "$OPT_BLK_ROOT")}" "expect_blk_msi=$EXPECT_BLK_MSI" \
	"require_net_msix=$REQUIRE_NET_MSIX" "require_input_msix=$REQUIRE_INPUT_MSIX" \
	"require_snd_msix=$REQUIRE_SND_MSIX" "test_net_link_flap=$TEST_NET_LINK_FLAP" \
	guest=aero-reference-linux "kernel=${AERO_KERNEL:-$(uname -r)}" "build_id=$AERO_BUILD_ID" "fwcfg_args=$FWCFG_COUNT" \
	$(opt_active)
[ -z "$insmod_failed" ] || say "reference-guest: insmod failed:$insmod_failed: $(clean "$(tail -n 1 "$W/insmod.err")")"

if [ "$USAGE_ERRORS" != 0 ]; then
	# The Windows guest exits 2 on a usage error, before its log exists; here the run ends
	# with a verdict so the host does not wait for its timeout.
	emit RESULT FAIL
	[ "$DRY" = 1 ] && opt_dump
	exit 0
fi
if [ "$DRY" = 1 ]; then
	opt_dump
	rm -rf "$W"
	exit 0
fi

for lib in pci blk input snd net; do
	. "$AERO_LIB/$lib.sh"
done

pci_scan
pci_report

test_blk
test_input
test_snd
test_net

if [ "$ALL_OK" = 1 ]; then
	emit RESULT PASS
else
	emit RESULT FAIL
fi
