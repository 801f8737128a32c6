#!/bin/sh
# Selftest of the aero reference guest (busybox sh).
#
# Does what the Windows guest's aero-virtio-selftest.exe does, for real, and
# reports on COM1 in the selftest protocol: CRLF lines
#   AERO_VIRTIO_SELFTEST|START|version=1
#   AERO_VIRTIO_SELFTEST|CONFIG|key=value...
#   AERO_VIRTIO_SELFTEST|TEST|<name>|<PASS|FAIL|SKIP|INFO>|key=value...
#   AERO_VIRTIO_SELFTEST|RESULT|<PASS|FAIL>
# The knobs were baked into /etc/aero/selftest.conf at build time.

. /etc/aero/selftest.conf

SERIAL=/dev/ttyS0
LOG=/run/aero/selftest.log
W=/run/aero/work
PATTERN=/usr/share/aero/pattern-1m.bin
PATTERN_BYTES=1048576
PATTERN_FNV1A64=0x8505ae4435522325
TONE=/usr/share/aero/tone.wav
BLK_MOUNT=/mnt/blk
BLK_ROOT=$BLK_MOUNT/aero-selftest
BLK_MIB=8
NET_IF=

mkdir -p "$W"
: > "$LOG"

if [ -c "$SERIAL" ]; then
	stty -F "$SERIAL" 115200 raw -echo 2>/dev/null
	exec 3>"$SERIAL"
else
	exec 3>/dev/console
fi

# emit FIELD... : one record, CRLF-terminated, in a single write.
emit() {
	local line=AERO_VIRTIO_SELFTEST f
	for f in "$@"; do
		line="$line|$f"
	done
	printf '%s\r\n' "$line" >&3
	printf '%s\n' "$line" >> "$LOG"
}

# clean TEXT: a field value (one line, no '|', at most 160 characters).
clean() {
	printf '%s' "$*" | tr '\r\n\t|' '   /' | tr -s ' ' | sed 's/^ //; s/ $//' | cut -c1-160
}

now() {
	local up rest
	read -r up rest < /proc/uptime
	echo "$up"
}

# mbps BYTES T0 T1
mbps() {
	awk -v b="$1" -v a="$2" -v z="$3" 'BEGIN { d = z - a; if (d < 0.01) d = 0.01; printf "%.2f", b / 1048576 / d }'
}

# secs T0 T1
secs() {
	awk -v a="$1" -v z="$2" 'BEGIN { printf "%.2f", z - a }'
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

# ---------------------------------------------------------------- virtio-blk

have_vd_partition() {
	ls /sys/block/vd*/vd* > /dev/null 2>&1
}

test_blk() {
	local p dev= bytes t0 t1 t2 t3 write_ok=0 flush_ok=0 read_ok=0 verify_ok=0 read_bytes=0 status

	wait_until 100 have_vd_partition
	for p in /sys/block/vd*/vd*; do
		[ -e "$p/partition" ] || continue
		if mount -t vfat -o rw,noatime "/dev/${p##*/}" "$BLK_MOUNT" 2>> "$W/blk.err"; then
			if [ -f "$BLK_MOUNT/aero/ID" ]; then
				dev=/dev/${p##*/}
				break
			fi
			umount "$BLK_MOUNT"
		fi
	done
	if [ -z "$dev" ]; then
		emit TEST virtio-blk FAIL reason=no_volume "disks=$(clean "$(ls /sys/block)")" \
			"error=$(clean "$(tail -n 2 "$W/blk.err" 2> /dev/null)")"
		return 1
	fi

	bytes=$((BLK_MIB * 1048576))
	mkdir -p "$BLK_ROOT"
	dd if=/dev/urandom of="$W/blk.src" bs=1M count="$BLK_MIB" 2> /dev/null
	t0=$(now)
	dd if="$W/blk.src" of="$BLK_ROOT/blk-test.bin" bs=1M conv=fsync 2>> "$W/blk.err" && write_ok=1
	t1=$(now)
	sync && echo 3 > /proc/sys/vm/drop_caches && flush_ok=1
	t2=$(now)
	dd if="$BLK_ROOT/blk-test.bin" of="$W/blk.back" bs=1M 2>> "$W/blk.err" && read_ok=1
	t3=$(now)
	[ -f "$W/blk.back" ] && read_bytes=$(stat -c %s "$W/blk.back")
	cmp -s "$W/blk.src" "$W/blk.back" && verify_ok=1
	rm -f "$BLK_ROOT/blk-test.bin" "$W/blk.src" "$W/blk.back"
	rmdir "$BLK_ROOT" 2> /dev/null
	sync
	umount "$BLK_MOUNT" 2>> "$W/blk.err"

	status=FAIL
	[ "$write_ok$flush_ok$read_ok$verify_ok" = 1111 ] && [ "$read_bytes" = "$bytes" ] && status=PASS
	emit TEST virtio-blk "$status" "write_ok=$write_ok" "write_bytes=$bytes" "write_mbps=$(mbps "$bytes" "$t0" "$t1")" \
		"flush_ok=$flush_ok" "read_ok=$read_ok" "read_bytes=$read_bytes" "read_mbps=$(mbps "$read_bytes" "$t2" "$t3")" \
		"verify_ok=$verify_ok" "dev=$dev" fs=vfat
	[ "$status" = PASS ]
}

# ---------------------------------------------------------------- virtio-net

find_net_if() {
	local n
	for n in /sys/class/net/*; do
		case "$(readlink "$n/device/driver" 2> /dev/null)" in
			*/virtio_net)
				NET_IF=${n##*/}
				return 0
				;;
		esac
	done
	return 1
}

# net_failed REASON ERRFILE: remember the first failure of test_net.
net_failed() {
	[ -n "$reason" ] && return
	reason=$1
	# the last line, without socat's timestamp
	err=$(clean "$(grep -v '^Connecting to' "$2" 2> /dev/null | tail -n 1 | sed 's|^[0-9/]* [0-9:.]* ||')")
}

test_net() {
	local dhcp_ok=0 small_ok=0 small_bytes=0 large_ok=0 large_bytes=0 large_fnv=none large_sha=none
	local upload_ok=0 upload_bytes=0 upload_status=none t0 t1 t2 t3 line status reason= err=
	local DHCP_IP= DHCP_ROUTER= DHCP_DNS=

	if ! wait_until 50 find_net_if; then
		emit TEST virtio-net FAIL reason=no_interface "error=$(clean "$(tail -n 2 "$W/insmod.err" 2> /dev/null)")"
		return 1
	fi
	ip link set lo up
	ip link set "$NET_IF" up
	if timeout 40 udhcpc -i "$NET_IF" -f -q -n -t 6 -T 2 -s /usr/share/aero/udhcpc.script > "$W/dhcp.out" 2>&1 \
		&& [ -f /run/aero/dhcp.env ]; then
		. /run/aero/dhcp.env
		dhcp_ok=1
	else
		emit TEST virtio-net FAIL reason=dhcp_failed "iface=$NET_IF" "error=$(clean "$(tail -n 2 "$W/dhcp.out")")"
		return 1
	fi

	# GET <path>: body "OK"
	if timeout 30 wget -T 10 -O "$W/small.txt" "$AERO_HTTP_URL" 2> "$W/small.err"; then
		small_bytes=$(stat -c %s "$W/small.txt")
		read -r line < "$W/small.txt"
		[ "$(printf '%s' "$line" | tr -d '\r')" = OK ] && small_ok=1
	fi
	[ "$small_ok" = 1 ] || net_failed small_get_failed "$W/small.err"

	# GET <path>-large: 1 MiB of 0..255 repeating
	t0=$(now)
	timeout 60 wget -T 20 -O "$W/large.bin" "$AERO_HTTP_URL-large" 2> "$W/large.err"
	t1=$(now)
	[ -f "$W/large.bin" ] && large_bytes=$(stat -c %s "$W/large.bin")
	if [ -f "$W/large.bin" ]; then
		large_sha=$(sha256sum "$W/large.bin" | cut -d' ' -f1)
		# Byte-for-byte equal to the pattern, so its FNV-1a is the pattern's.
		cmp -s "$W/large.bin" "$PATTERN" && large_ok=1 && large_fnv=$PATTERN_FNV1A64
	fi
	[ "$large_ok" = 1 ] || net_failed large_get_failed "$W/large.err"

	# POST <path>-large with the pattern as a binary body (raw HTTP over socat)
	{
		printf 'POST %s-large HTTP/1.0\r\nHost: %s:%s\r\nUser-Agent: aero-reference-guest\r\n' \
			"$AERO_HTTP_PATH" "$AERO_HTTP_HOST" "$AERO_HTTP_PORT"
		printf 'Content-Type: application/octet-stream\r\nContent-Length: %s\r\nConnection: close\r\n\r\n' "$PATTERN_BYTES"
		cat "$PATTERN"
	} > "$W/upload.req"
	t2=$(now)
	timeout 60 socat -t 20 -T 30 - "TCP:$AERO_HTTP_HOST:$AERO_HTTP_PORT,connect-timeout=10" \
		< "$W/upload.req" > "$W/upload.resp" 2> "$W/upload.err"
	t3=$(now)
	read -r line < "$W/upload.resp"
	upload_status=$(printf '%s' "$line" | tr -d '\r' | cut -d' ' -f2)
	[ -n "$upload_status" ] || upload_status=none
	[ "$upload_status" = 200 ] && upload_ok=1
	if [ "$upload_ok" = 1 ]; then
		upload_bytes=$PATTERN_BYTES
	else
		net_failed upload_failed "$W/upload.err"
	fi

	status=FAIL
	[ "$dhcp_ok$small_ok$large_ok$upload_ok" = 1111 ] && status=PASS
	set -- "dhcp_ok=$dhcp_ok" "ip=$DHCP_IP" "router=$DHCP_ROUTER" "iface=$NET_IF" \
		"small_ok=$small_ok" "small_bytes=$small_bytes" \
		"large_ok=$large_ok" "large_bytes=$large_bytes" "large_fnv1a64=$large_fnv" "large_sha256=$large_sha" \
		"large_mbps=$(mbps "$large_bytes" "$t0" "$t1")" \
		"upload_ok=$upload_ok" "upload_bytes=$upload_bytes" "upload_status=$upload_status" \
		"upload_mbps=$(mbps "$upload_bytes" "$t2" "$t3")"
	[ "$status" = PASS ] || set -- "$@" "reason=$reason" "error=$err"
	emit TEST virtio-net "$status" "$@"
	[ "$status" = PASS ]
}

# udp_echo FILE: send FILE as one datagram, expect it back unchanged.
udp_echo() {
	local wait
	for wait in 0.5 1 2; do
		rm -f "$W/udp.out"
		timeout 15 socat -t "$wait" -T 10 - "UDP:$AERO_HTTP_HOST:$AERO_UDP_PORT" < "$1" > "$W/udp.out" 2>> "$W/udp.err"
		cmp -s "$1" "$W/udp.out" && return 0
		UDP_RETRIES=$((UDP_RETRIES + 1))
	done
	return 1
}

test_udp() {
	local sent=0 echoed=0 bytes=0 f status t0 t1
	UDP_RETRIES=0
	if [ -z "$NET_IF" ] || [ ! -f /run/aero/dhcp.env ]; then
		emit TEST virtio-net-udp FAIL reason=no_network "port=$AERO_UDP_PORT"
		return 1
	fi
	printf 'aero-udp-%s' "$(cat /proc/sys/kernel/random/uuid)" > "$W/udp.small"
	head -c 1400 /dev/urandom > "$W/udp.large"
	t0=$(now)
	for f in "$W/udp.small" "$W/udp.large"; do
		sent=$((sent + 1))
		if ! udp_echo "$f"; then
			break # no echo despite the retries: the next would not fare better
		fi
		echoed=$((echoed + 1))
		bytes=$((bytes + $(stat -c %s "$f")))
	done
	t1=$(now)
	status=FAIL
	[ "$echoed" = "$sent" ] && status=PASS
	set -- "udp_ok=$([ "$status" = PASS ] && echo 1 || echo 0)" "port=$AERO_UDP_PORT" "sent=$sent" "echoed=$echoed" \
		"bytes=$bytes" "retries=$UDP_RETRIES" "secs=$(secs "$t0" "$t1")"
	[ "$status" = PASS ] || set -- "$@" reason=no_echo \
		"error=$(clean "$(tail -n 1 "$W/udp.err" 2> /dev/null | sed 's|^[0-9/]* [0-9:.]* ||')")"
	emit TEST virtio-net-udp "$status" "$@"
	[ "$status" = PASS ]
}

# ---------------------------------------------------------------- virtio-snd

snd_present() {
	local d
	for d in /sys/bus/virtio/devices/*; do
		[ "$(cat "$d/device" 2> /dev/null)" = 0x0019 ] && return 0
	done
	return 1
}

have_pcm() {
	ls /dev/snd/pcmC*D*p > /dev/null 2>&1
}

test_snd() {
	local failed pcm name card dev rc t0 t1 reason
	if ! snd_present; then
		if [ "$AERO_REQUIRE_SND" = 1 ]; then
			emit TEST virtio-snd FAIL reason=device_missing require_snd=1
			return 1
		fi
		emit TEST virtio-snd SKIP reason=device_missing require_snd=0
		return 0
	fi
	failed=$(load_modules /etc/aero/modules.snd)
	[ -z "$failed" ] || emit TEST virtio-snd INFO "insmod_failed=$(clean "$failed")" \
		"error=$(clean "$(tail -n 1 "$W/insmod.err")")"
	if ! wait_until 100 have_pcm; then
		emit TEST virtio-snd FAIL reason=no_pcm_device "error=$(clean "$(dmesg | grep -i snd | tail -n 2)")"
		return 1
	fi
	pcm=$(ls /dev/snd/pcmC*D*p | head -n 1)
	name=${pcm##*/pcmC}
	card=${name%%D*}
	dev=${name#*D}
	dev=${dev%p}
	t0=$(now)
	timeout 20 aplay -q -D "plughw:$card,$dev" "$TONE" > "$W/aplay.err" 2>&1
	rc=$?
	t1=$(now)
	if [ "$rc" = 0 ]; then
		emit TEST virtio-snd PASS "device=plughw:$card,$dev" tone_hz=500 rate=48000 channels=2 format=S16_LE \
			frames=48000 "play_secs=$(secs "$t0" "$t1")"
		return 0
	fi
	case "$rc" in
		124 | 137 | 143) reason=aplay_timeout ;;
		*) reason=aplay_failed ;;
	esac
	emit TEST virtio-snd INFO "aplay_rc=$rc" "error=$(clean "$(head -n 3 "$W/aplay.err")")"
	emit TEST virtio-snd FAIL "reason=$reason" "device=plughw:$card,$dev" "rc=$rc"
	return 1
}

# ---------------------------------------------------------------- main

emit START version=1
failed=$(load_modules /etc/aero/modules.base)
emit CONFIG "http_url=$AERO_HTTP_URL" "udp_port=$AERO_UDP_PORT" "blk_root=$BLK_ROOT" "require_snd=$AERO_REQUIRE_SND" \
	guest=aero-reference-linux "kernel=$(uname -r)" "build_id=$AERO_BUILD_ID"
[ -z "$failed" ] || emit TEST reference-guest INFO "insmod_failed=$(clean "$failed")" \
	"error=$(clean "$(tail -n 1 "$W/insmod.err")")"

result=PASS
test_blk || result=FAIL
test_net || result=FAIL
test_udp || result=FAIL
test_snd || result=FAIL
emit RESULT "$result"
