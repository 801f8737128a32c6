# virtio-net section of the selftest (sourced by selftest.sh), in the Windows guest's order:
# DHCP, UDP echo (32 then 1400 bytes), name resolution, virtio-net-udp-dns, GET <url>,
# [link flap], GET <url>-large, POST <url>-large; then the markers virtio-net-udp, virtio-net,
# virtio-net-offload-csum, virtio-net-link-flap (SKIP without the flag) and virtio-net-msix.

NET_IF=
NET_SLOT=
NET_VDEV=
DNS_CANDIDATES_FIXED="host.lan gateway.lan dns.lan example.com"

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

# ---------------------------------------------------------------- UDP echo

# udp_request FILE HOST PORT SECS OUT: send FILE as one datagram and write the first reply to OUT;
# returns as soon as the reply is in (socat alone would wait out its timeout), fails after SECS
udp_request() {
	local pid
	rm -f "$W/udp.fifo" "$5"
	mkfifo "$W/udp.fifo"
	socat -t "$4" -T "$4" - "UDP:$2:$3" < "$1" > "$W/udp.fifo" 2>> "$W/udp.err" &
	pid=$!
	timeout "$4" dd if="$W/udp.fifo" of="$5" bs=65536 count=1 2> /dev/null
	kill "$pid" 2> /dev/null
	wait "$pid" 2> /dev/null
	rm -f "$W/udp.fifo"
	[ -s "$5" ]
}

# udp_echo FILE: one datagram, expected back byte for byte (up to 3 tries); UDP_REASON on failure
udp_echo() {
	local wait size got
	size=$(stat -c %s "$1")
	for wait in 1 2 3; do
		if ! udp_request "$1" "$AERO_HTTP_HOST" "$OPT_UDP_PORT" "$wait" "$W/udp.out"; then
			UDP_REASON=timeout
		else
			got=$(stat -c %s "$W/udp.out")
			if [ "$got" != "$size" ]; then
				UDP_REASON=unexpected_len
			elif cmp -s "$1" "$W/udp.out"; then
				return 0
			else
				UDP_REASON=mismatch
			fi
		fi
		UDP_RETRIES=$((UDP_RETRIES + 1))
	done
	return 1
}

# net_udp: the 32- and 1400-byte datagrams of bytes i & 0xFF (the pattern's first bytes)
net_udp() {
	UDP_RETRIES=0 UDP_REASON=
	udp_small=32 udp_mtu=1400
	head -c 32 "$PATTERN" > "$W/udp.small"
	head -c 1400 "$PATTERN" > "$W/udp.mtu"
	udp_bytes=32
	udp_echo "$W/udp.small" || return 1
	udp_bytes=1400
	udp_echo "$W/udp.mtu" || return 1
	UDP_REASON=-
	say "virtio-net: UDP echo ok port=$OPT_UDP_PORT bytes_small=32 bytes_mtu=1400 retries=$UDP_RETRIES"
}

# ---------------------------------------------------------------- DNS

# dns_candidates: --dns-host, then the fixed names, without repeats (case-insensitive)
dns_candidates() {
	local seen=" " n l
	for n in "$OPT_DNS_HOST" $DNS_CANDIDATES_FIXED; do
		l=$(echo "$n" | tr A-Z a-z)
		case "$seen" in
			*" $l "*) continue ;;
		esac
		seen="$seen$l "
		echo "$n"
	done
}

# dns_resolve: the first candidate that resolves (DNS_NAME, DNS_IP), through the resolver the
# lease configured (busybox nslookup reads /etc/resolv.conf)
dns_resolve() {
	local n ip
	for n in $(dns_candidates); do
		ip=$(timeout 10 nslookup -type=a "$n" 2> /dev/null \
			| awk '/^Name:/ { named = 1 } named && /^Address/ { sub(/^Address:?[ \t]*/, ""); sub(/[ \t].*/, ""); print; exit }')
		if [ -n "$ip" ]; then
			say "virtio-net: DNS A[0]=$ip"
			say "virtio-net: DNS resolve ok host=$n"
			DNS_NAME=$n DNS_IP=$ip
			return 0
		fi
		say "virtio-net: DNS resolve failed host=$n"
	done
	return 1
}

# dns_query NAME SERVER: a raw A/IN query over UDP port 53 (the Windows guest's
# virtio-net-udp-dns): any reply with our ID counts, whatever its rcode (DNS_RCODE, DNS_SENT, DNS_RECV)
dns_query() {
	local id hi lo n fmt label rest
	id=$(($(now_ms) & 65535))
	# printf escapes \ooo, computed without a fork per byte
	hi=$((id >> 8)) lo=$((id & 255))
	fmt="\\$((hi / 64))$((hi / 8 % 8))$((hi % 8))\\$((lo / 64))$((lo / 8 % 8))$((lo % 8))"
	fmt="$fmt\\001\\000\\000\\001\\000\\000\\000\\000\\000\\000"
	rest=$1
	while [ -n "$rest" ]; do
		label=${rest%%.*}
		[ "$label" = "$rest" ] && rest= || rest=${rest#*.}
		n=${#label}
		fmt="$fmt\\$((n / 64))$((n / 8 % 8))$((n % 8))$label"
	done
	fmt="$fmt\\000\\000\\001\\000\\001"
	# shellcheck disable=SC2059 # the format is the packet
	printf "$fmt" > "$W/dns.q"
	DNS_SENT=$(stat -c %s "$W/dns.q")
	udp_request "$W/dns.q" "$2" 53 2 "$W/dns.r"
	DNS_RECV=$(stat -c %s "$W/dns.r" 2> /dev/null || echo 0)
	[ "$DNS_RECV" -ge 12 ] || return 1
	set -- $(od -An -v -t u1 -N 4 "$W/dns.r")
	[ $(($1 * 256 + $2)) = "$id" ] || return 1
	DNS_RCODE=$(($4 & 15))
}

net_udp_dns() {
	local server n
	server=$(awk '$1 == "nameserver" { print $2; exit }' /etc/resolv.conf 2> /dev/null)
	if [ -z "$server" ]; then
		emit TEST virtio-net-udp-dns SKIP no_dns_server
		return
	fi
	DNS_SENT=0 DNS_RECV=0 DNS_RCODE=0
	for n in $(dns_candidates); do
		if dns_query "$n" "$server"; then
			emit TEST virtio-net-udp-dns PASS "server=$server" "query=$n" "sent=$DNS_SENT" "recv=$DNS_RECV" \
				"rcode=$DNS_RCODE"
			return
		fi
	done
	emit TEST virtio-net-udp-dns FAIL server=0.0.0.0 query=- "sent=$DNS_SENT" "recv=$DNS_RECV" rcode=0
}

# ---------------------------------------------------------------- HTTP

# http_get_small: GET <url>, body "OK" (SMALL_BYTES)
http_get_small() {
	local line
	rm -f "$W/small.txt"
	timeout 30 wget -T 15 -O "$W/small.txt" "$OPT_HTTP_URL" 2> "$W/small.err" || return 1
	SMALL_BYTES=$(stat -c %s "$W/small.txt")
	read -r line < "$W/small.txt"
	[ "$(printf '%s' "$line" | tr -d '\r')" = OK ] || return 1
	say "virtio-net: HTTP GET ok url=$OPT_HTTP_URL status=200 bytes_read=$SMALL_BYTES"
}

# net_err FILE: the last line of a tool's complaint, for error=
net_err() {
	clean "$(grep -v '^Connecting to' "$1" 2> /dev/null | tail -n 1 | sed 's|^[0-9/]* [0-9:.]* ||')"
}

# ---------------------------------------------------------------- link flap

link_up() {
	local c
	read -r c < "/sys/class/net/$NET_IF/carrier" 2> /dev/null || return 1
	[ "$c" = 1 ]
}

net_ipv4() {
	ip -4 -o addr show dev "$NET_IF" 2> /dev/null | awk '{ for (i = 1; i < NF; i++) if ($i == "inet") { sub(/\/.*/, "", $(i + 1)); print $(i + 1); exit } }'
}

# net_link_flap: the host takes the link down (QMP set_link) after READY and brings it back
net_link_flap() {
	local mac t_start t0 samples=0 saw=0 deadline down_ms=0 up_ms=0 rec_ms=0 ip= attempts=0 ok=0
	local cfg= cfg_before=0 cfg_down=0 cfg_up=0
	read -r mac < "/sys/class/net/$NET_IF/address"
	grep -q " $NET_VDEV-config\$" /proc/interrupts && cfg=$NET_VDEV-config
	[ -n "$cfg" ] && cfg_before=$(irq_count "$cfg")
	emit TEST virtio-net-link-flap READY "adapter=$NET_IF" "guid=$mac"
	t_start=$(now_ms)
	deadline=$((t_start + $(host_wait_ms 30000)))
	while [ "$(now_ms)" -lt "$deadline" ]; do
		if link_up; then
			samples=0
		else
			samples=$((samples + 1))
		fi
		if [ "$samples" -ge 2 ]; then
			saw=1
			break
		fi
		usleep 200000
	done
	down_ms=$(($(now_ms) - t_start))
	[ -n "$cfg" ] && cfg_down=$(irq_count "$cfg")
	if [ "$saw" != 1 ]; then
		emit TEST virtio-net-link-flap FAIL reason=timeout_waiting_link_down "adapter=$NET_IF" "guid=$mac" \
			"down_wait_ms=$down_ms" "down_sec=$(secs_ms "$down_ms")" "total_ms=$(($(now_ms) - t_start))" $(flap_cfg)
		return 1
	fi
	say "virtio-net-link-flap: observed link DOWN down_sec=$(secs_ms "$down_ms") down_wait_ms=$down_ms"
	if [ -n "$cfg" ] && [ "$cfg_down" = "$cfg_before" ]; then
		emit TEST virtio-net-link-flap FAIL reason=config_irq_missing_down "adapter=$NET_IF" "guid=$mac" \
			"down_wait_ms=$down_ms" "down_sec=$(secs_ms "$down_ms")" "total_ms=$(($(now_ms) - t_start))" $(flap_cfg)
		return 1
	fi
	t0=$(now_ms)
	deadline=$((t0 + OPT_NET_TIMEOUT_SEC * 1000))
	while :; do
		if link_up; then
			ip=$(net_ipv4)
			[ -n "$ip" ] && break
		fi
		[ "$(now_ms)" -lt "$deadline" ] || break
		usleep 500000
	done
	up_ms=$(($(now_ms) - t0))
	[ -n "$cfg" ] && cfg_up=$(irq_count "$cfg")
	set -- "adapter=$NET_IF" "guid=$mac" "down_wait_ms=$down_ms" "up_wait_ms=$up_ms"
	if [ -z "$ip" ]; then
		emit TEST virtio-net-link-flap FAIL reason=timeout_waiting_link_up "$@" "down_sec=$(secs_ms "$down_ms")" \
			"up_sec=$(secs_ms "$up_ms")" "total_ms=$(($(now_ms) - t_start))" $(flap_cfg)
		return 1
	fi
	say "virtio-net-link-flap: observed link UP up_sec=$(secs_ms "$up_ms") up_wait_ms=$up_ms"
	if [ -n "$cfg" ] && [ "$cfg_up" = "$cfg_down" ]; then
		emit TEST virtio-net-link-flap FAIL reason=config_irq_missing_up "$@" "down_sec=$(secs_ms "$down_ms")" \
			"up_sec=$(secs_ms "$up_ms")" "total_ms=$(($(now_ms) - t_start))" $(flap_cfg)
		return 1
	fi
	t0=$(now_ms)
	while [ "$attempts" -lt 3 ]; do
		attempts=$((attempts + 1))
		if http_get_small; then
			ok=1
			break
		fi
		usleep 500000
	done
	rec_ms=$(($(now_ms) - t0))
	set -- "$@" "recovery_wait_ms=$rec_ms" "down_sec=$(secs_ms "$down_ms")" "up_sec=$(secs_ms "$up_ms")"
	if [ "$ok" != 1 ]; then
		emit TEST virtio-net-link-flap FAIL reason=http_get_failed "$@" "http_attempts=$attempts" \
			"recovery_attempts=$attempts" "total_ms=$(($(now_ms) - t_start))" $(flap_cfg)
		return 1
	fi
	emit TEST virtio-net-link-flap PASS "$@" "ipv4=$ip" "http_attempts=$attempts" "recovery_attempts=$attempts" \
		"total_ms=$(($(now_ms) - t_start))" $(flap_cfg)
}

# flap_cfg: the config-interrupt counters (MSI-X only: vector 0 is the config vector)
flap_cfg() {
	[ -n "$cfg" ] || return 0
	echo "cfg_vector=0 cfg_intr_before=$cfg_before cfg_intr_down=$cfg_down cfg_intr_up=$cfg_up" \
		"cfg_intr_down_delta=$((cfg_down - cfg_before)) cfg_intr_up_delta=$((cfg_up - cfg_down))"
}

# ---------------------------------------------------------------- the section

# net_run: the steps; the first failure ends it (NET_REASON, NET_ERR)
net_run() {
	local t0 t1
	if ! wait_until 50 find_net_if; then
		NET_REASON=no_interface NET_ERR=$(clean "$(tail -n 2 "$W/insmod.err" 2> /dev/null)")
		return 1
	fi
	say "virtio-net: waiting for link+dhcp timeout_sec=$OPT_NET_TIMEOUT_SEC"
	ip link set lo up
	ip link set "$NET_IF" up
	if timeout "$((OPT_NET_TIMEOUT_SEC + 5))" udhcpc -i "$NET_IF" -f -q -n -t "$((OPT_NET_TIMEOUT_SEC / 2 + 1))" -T 2 \
		-s "$AERO_LIB/udhcpc.script" > "$W/dhcp.out" 2>&1 && [ -f /run/aero/dhcp.env ]; then
		. /run/aero/dhcp.env
		dhcp_ok=1
	else
		NET_REASON=dhcp_failed NET_ERR=$(clean "$(tail -n 2 "$W/dhcp.out")")
		return 1
	fi
	read -r NET_MAC < "/sys/class/net/$NET_IF/address"
	say "virtio-net: adapter up name=$NET_IF guid=$NET_MAC ipv4=$DHCP_IP"

	if ! net_udp; then
		say "virtio-net: UDP echo failed reason=$UDP_REASON bytes=$udp_bytes"
		NET_REASON=udp_failed NET_ERR=$(net_err "$W/udp.err")
		return 1
	fi
	if ! dns_resolve; then
		NET_REASON=dns_failed NET_ERR="none of: $(dns_candidates | tr '\n' ' ')"
		return 1
	fi
	net_udp_dns

	if http_get_small; then
		small_ok=1
	else
		NET_REASON=small_get_failed NET_ERR=$(net_err "$W/small.err")
		return 1
	fi

	if [ "$TEST_NET_LINK_FLAP" = 1 ]; then
		net_link_flap && FLAP_OK=1
	fi

	t0=$(now)
	timeout 60 wget -T 20 -O "$W/large.bin" "$OPT_HTTP_URL_LARGE" 2> "$W/large.err"
	t1=$(now)
	if [ -f "$W/large.bin" ]; then
		large_bytes=$(stat -c %s "$W/large.bin")
		large_mbps=$(mbps "$large_bytes" "$t0" "$t1")
		large_sha=$(sha256sum "$W/large.bin" | cut -d' ' -f1)
		# Byte-for-byte equal to the pattern, so its FNV-1a is the pattern's.
		cmp -s "$W/large.bin" "$PATTERN" && large_ok=1 && large_fnv=$PATTERN_FNV1A64
		rm -f "$W/large.bin"
	fi
	if [ "$large_ok" != 1 ]; then
		NET_REASON=large_get_failed NET_ERR=$(net_err "$W/large.err")
		return 1
	fi
	say "virtio-net: HTTP GET large ok bytes=$large_bytes fnv1a64=$large_fnv mbps=$large_mbps"

	# POST <path>-large with the pattern as a binary body (raw HTTP over socat)
	{
		printf 'POST %s-large HTTP/1.0\r\nHost: %s:%s\r\nUser-Agent: aero-reference-guest\r\n' \
			"$AERO_HTTP_PATH" "$AERO_HTTP_HOST" "$AERO_HTTP_PORT"
		printf 'Content-Type: application/octet-stream\r\nContent-Length: %s\r\nConnection: close\r\n\r\n' "$PATTERN_BYTES"
		cat "$PATTERN"
	} > "$W/upload.req"
	t0=$(now)
	timeout 60 socat -t 20 -T 30 - "TCP:$AERO_HTTP_HOST:$AERO_HTTP_PORT,connect-timeout=10" \
		< "$W/upload.req" > "$W/upload.resp" 2> "$W/upload.err"
	t1=$(now)
	rm -f "$W/upload.req"
	read -r line < "$W/upload.resp"
	upload_status=$(printf '%s' "$line" | tr -d '\r' | cut -d' ' -f2)
	[ -n "$upload_status" ] || upload_status=none
	case "$upload_status" in
		2??)
			upload_ok=1
			upload_bytes=$PATTERN_BYTES
			upload_mbps=$(mbps "$upload_bytes" "$t0" "$t1")
			say "virtio-net: HTTP POST large ok bytes=$upload_bytes status=$upload_status mbps=$upload_mbps"
			;;
		*)
			NET_REASON=upload_failed NET_ERR=$(net_err "$W/upload.err")
			[ -n "$NET_ERR" ] || NET_ERR="status $upload_status"
			return 1
			;;
	esac
}

test_net() {
	local dhcp_ok=0 small_ok=0 large_ok=0 large_bytes=0 large_fnv=none large_sha=none large_mbps=0.00
	local upload_ok=0 upload_bytes=0 upload_status=none upload_mbps=0.00 line status msi
	local udp_bytes=0 udp_small=0 udp_mtu=0 UDP_REASON=unknown UDP_RETRIES=0 NET_REASON= NET_ERR= NET_MAC=
	local DHCP_IP= DHCP_ROUTER= DHCP_DNS= DNS_NAME=- DNS_IP=- FLAP_OK=0 ran=0
	if ! pci_get net; then
		say "virtio-net: no virtio net adapters detected"
		NET_REASON=pci_device_missing
	elif [ "$P_BOUND" != 1 ]; then
		NET_SLOT=$P_SLOT
		say "virtio-net: $P_ID (rev $P_REV) is not an Aero contract device ($(pci_expected net))"
		NET_REASON=driver_not_bound
	else
		NET_SLOT=$P_SLOT
		virtio_of "$NET_SLOT"
		NET_VDEV=$VDEV
		ran=1
		net_run && status=PASS
	fi

	if [ "$UDP_REASON" = - ]; then
		emit TEST virtio-net-udp PASS "bytes=$udp_bytes" "small_bytes=$udp_small" "mtu_bytes=$udp_mtu" reason=- wsa=0 \
			"port=$OPT_UDP_PORT" "retries=$UDP_RETRIES"
	else
		emit TEST virtio-net-udp FAIL "bytes=$udp_bytes" "small_bytes=$udp_small" "mtu_bytes=$udp_mtu" \
			"reason=$UDP_REASON" wsa=0 "port=$OPT_UDP_PORT" "retries=$UDP_RETRIES"
	fi

	pci_irq "$NET_SLOT"
	msi=0
	[ "$IRQ_COUNT" -gt 0 ] && msi=1
	set -- "large_ok=$large_ok" "large_bytes=$large_bytes" "large_fnv1a64=$large_fnv" "large_mbps=$large_mbps" \
		"upload_ok=$upload_ok" "upload_bytes=$upload_bytes" "upload_mbps=$upload_mbps" "msi=$msi" \
		"msi_messages=$IRQ_COUNT" "irq_mode=$IRQ_MODE" "irq_message_count=$IRQ_COUNT" "dhcp_ok=$dhcp_ok" \
		"ip=${DHCP_IP:--}" "router=${DHCP_ROUTER:--}" "iface=${NET_IF:--}" "dns_name=$DNS_NAME" "dns_ip=$DNS_IP" \
		"small_ok=$small_ok" "small_bytes=${SMALL_BYTES:-0}" "large_sha256=$large_sha" "upload_status=$upload_status"
	if [ "$status" = PASS ]; then
		emit TEST virtio-net PASS "$@"
	else
		case "$NET_REASON" in
			driver_not_bound) set -- $(unbound_fields net) "$@" ;;
			*) set -- "reason=$NET_REASON" "$@" ;;
		esac
		[ -z "$NET_ERR" ] || set -- "$@" "error=$NET_ERR"
		emit TEST virtio-net FAIL "$@"
		fail_result
	fi
	if [ "$ran" = 1 ] && [ -n "$NET_VDEV" ] && [ -r "/sys/bus/virtio/devices/$NET_VDEV/features" ]; then
		read -r line < "/sys/bus/virtio/devices/$NET_VDEV/features"
		# negotiated VIRTIO_NET_F_CSUM (bit 0) and VIRTIO_NET_F_GUEST_CSUM (bit 1); no packet counters here
		emit TEST virtio-net-offload-csum INFO "tx_csum=${line:0:1}" "rx_csum=${line:1:1}" source=negotiated_features
	fi
	if [ "$TEST_NET_LINK_FLAP" != 1 ]; then
		emit TEST virtio-net-link-flap SKIP flag_not_set
	elif [ "$FLAP_OK" != 1 ]; then
		fail_result # with no marker at all when the net test failed before the first GET, as the Windows guest
	fi
	net_msix
	[ -z "$NET_SLOT" ] || irq_line virtio-net "$NET_SLOT"
}

net_msix() {
	local mode
	if [ -z "$NET_SLOT" ]; then
		if [ "$REQUIRE_NET_MSIX" = 1 ]; then
			emit TEST virtio-net-msix FAIL reason=device_missing
			fail_result
		else
			emit TEST virtio-net-msix SKIP reason=device_missing
		fi
		return
	fi
	pci_irq "$NET_SLOT"
	mode=$IRQ_MODE
	[ "$mode" = msi ] && mode=msix
	if [ "$REQUIRE_NET_MSIX" = 1 ] && [ "$mode" != msix ]; then
		say "virtio-net-msix: --require-net-msix set but mode=$mode"
		emit TEST virtio-net-msix FAIL "mode=$mode" "messages=$IRQ_COUNT"
		fail_result
	else
		emit TEST virtio-net-msix PASS "mode=$mode" "messages=$IRQ_COUNT"
	fi
}
