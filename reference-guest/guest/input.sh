# virtio-input section of the selftest (sourced by selftest.sh).
#
# The Windows guest reads HID reports; here the same devices are read through evdev: each
# /dev/input/eventN of a virtio-input PCI function is copied raw (cat) into a file while a test
# waits, and the struct input_event records (24 bytes on x86_64) are decoded with od and awk.
# A "report" is one SYN_REPORT frame; a "bad report" is a SYN_DROPPED (events the kernel lost).
# The mouse's wheel is judged per frame, as the real guest reads the Aero driver's HID reports: the
# driver sums a frame's REL_WHEEL and REL_HWHEEL deltas into one report's wheel and AC Pan at EV_SYN,
# and the real guest wants +1 and -2 in each report that scrolls (any other non-zero value fails it).

INPUT_WAIT_MS=15000 # after READY (the Windows guest: 10 s); more room under TCG
INPUT_WAIT_EXTENDED_MS=20000 # with an extended subtest (the Windows guest: 15 s)
EXPECTED_WHEEL=1 # per report (main.cpp kExpectedMouseWheelDelta): the host sends one notch up per frame
EXPECTED_HWHEEL=-2 # per report (kExpectedMouseHWheelDelta): two notches left; QEMU 7.2 and 10.0 send none
TABLET_X=10000
TABLET_Y=20000

# input_nodes_ready: every virtio-input function with a driver has its evdev node
input_nodes_ready() {
	local slot e
	for slot in $(pci_slots input); do
		virtio_of "$slot" && [ -e "$PCI/$slot/$VDEV/driver" ] || continue
		for e in "$PCI/$slot/$VDEV"/input/input*/event*; do
			[ -e "$e" ] || return 1
		done
	done
}

# input_scan: $W/input.list, one line per evdev node of a virtio-input function:
# SLOT BOUND EVENT KIND (keyboard, mouse, tablet, unknown) CONSUMER (0/1)
input_scan() {
	local slot id rev subsys cls kind bound e ev k consumer
	wait_until 20 input_nodes_ready
	: > "$W/input.list"
	while read -r slot id rev subsys cls kind bound; do
		[ "$kind" = input ] || continue
		for e in "$PCI/$slot"/virtio*/input/input*/event*; do
			[ -e "$e" ] || continue
			read -r ev < "$e/device/capabilities/ev"
			ev=$((0x$ev))
			consumer=0
			if [ $((ev & 8)) != 0 ]; then
				k=tablet
			elif [ $((ev & 4)) != 0 ]; then
				k=mouse
			elif [ $((ev & 2)) != 0 ]; then
				k=keyboard
				has_key "${e##*/}" 115 && consumer=1 # KEY_VOLUMEUP
			else
				k=unknown
			fi
			echo "$slot $bound ${e##*/} $k $consumer" >> "$W/input.list"
		done
	done < "$W/pci.list"
}

# has_key EVENT CODE: the node reports key CODE (capabilities/key is a list of 64-bit hex words,
# the highest first)
has_key() {
	awk -v code="$2" '{
		i = NF - int(code / 64); if (i < 1) exit 1
		w = $i; b = code % 64; p = length(w) - int(b / 4); if (p < 1) exit 1
		v = index("0123456789abcdef", substr(w, p, 1)) - 1
		r = int(v / substr("1248", b % 4 + 1, 1)) % 2 # no ^ in busybox awk
		exit 1 - r
	}' "/sys/class/input/$1/device/capabilities/key"
}

# input_count KIND [BOUND]: the number of nodes of KIND (of bound functions when BOUND=1)
input_count() {
	awk -v k="$1" -v b="${2:-}" '$4 == k && (b == "" || $2 == b) { n++ } END { print n + 0 }' "$W/input.list"
}

# input_node KIND: the first node of KIND of a bound function
input_node() {
	awk -v k="$1" '$4 == k && $2 == 1 { print $3; exit }' "$W/input.list"
}

# input_slot EVENT: its PCI slot
input_slot() {
	awk -v e="$1" '$3 == e { print $1; exit }' "$W/input.list"
}

# ---------------------------------------------------------------- raw evdev readers

# ev_start NAME EVENT: copy the node's events into $W/NAME.ev until ev_stop; returns once the
# node is open (a READY marker must not come before the reader listens)
ev_start() {
	local pid n=0
	: > "$W/$1.ev"
	cat "/dev/input/$2" >> "$W/$1.ev" 2> /dev/null &
	pid=$!
	echo "$pid" > "$W/$1.pid"
	while [ "$n" -lt 50 ]; do
		ls -l "/proc/$pid/fd" 2> /dev/null | grep -q "/dev/input/$2\$" && return 0
		n=$((n + 1))
		usleep 20000
	done
	return 1
}

ev_stop() {
	local f pid
	for f in "$@"; do
		if read -r pid < "$W/$f.pid" 2> /dev/null; then
			kill "$pid" 2> /dev/null
			wait "$pid" 2> /dev/null
		fi
		rm -f "$W/$f.pid"
	done
}

# ev_decode NAME AWK: run AWK over the (type, code, value) records so far; it prints shell
# assignments
ev_decode() {
	od -An -v -t d4 -w24 "$W/$1.ev" | awk "{ t = \$5 % 65536; c = (\$5 - t) / 65536; v = \$6 } $2"
}

# ev_codes NAME: the distinct type:code pairs seen (EV_SYN left out), for the log
ev_codes() {
	ev_decode "$1" 't != 0 && !seen[t ":" c]++ { printf "%s%d:%d", n++ ? "," : "", t, c } END { print "" }'
}

KBD_AWK='
	t == 0 && c == 0 { reports++; next }
	t == 0 && c == 3 { bad++; next }
	t != 1 || v == 2 { next }
	c == 30 { if (v) a_down = 1; else if (a_down) a_up = 1 }
	c == 42 || c == 54 { shift = v }
	c == 48 && v && shift { shift_b = 1 }
	c == 29 || c == 97 { if (v) ctrl_down = 1; else if (ctrl_down) ctrl_up = 1 }
	c == 56 || c == 100 { if (v) alt_down = 1; else if (alt_down) alt_up = 1 }
	c == 59 { if (v) f1_down = 1; else if (f1_down) f1_up = 1 }
	c == 115 { if (v) vol_down = 1; else if (vol_down) vol_up = 1 }
	END {
		printf "kbd_reports=%d kbd_bad=%d kbd_a_down=%d kbd_a_up=%d shift_b=%d ctrl_down=%d ctrl_up=%d ", reports, bad, a_down, a_up, shift_b, ctrl_down, ctrl_up
		printf "alt_down=%d alt_up=%d f1_down=%d f1_up=%d vol_down=%d vol_up=%d\n", alt_down, alt_up, f1_down, f1_up, vol_down, vol_up
	}'

MOUSE_AWK="BEGIN { ew = $EXPECTED_WHEEL; eh = $EXPECTED_HWHEEL }"'
	t == 0 && c == 0 {
		reports++
		if (fw) { saw_w = 1; we++; wt += fw; if (fw == ew) wok = 1; else { wbad = 1; wlast = fw } }
		if (fh) { saw_h = 1; he++; ht += fh; if (fh == eh) hok = 1; else { hbad = 1; hlast = fh } }
		fw = 0; fh = 0
		next
	}
	t == 0 && c == 3 { bad++; fw = 0; fh = 0; next }
	t == 2 && (c == 0 || c == 1) && v { move = 1 }
	t == 2 && c == 8 { fw += v }
	t == 2 && c == 6 { fh += v }
	t != 1 || v == 2 { next }
	c == 272 { if (v) left_down = 1; else if (left_down) left_up = 1 }
	c == 275 { if (v) side_down = 1; else if (side_down) side_up = 1 }
	c == 276 { if (v) extra_down = 1; else if (extra_down) extra_up = 1 }
	END {
		printf "mouse_reports=%d mouse_bad=%d mouse_move=%d mouse_left_down=%d mouse_left_up=%d ", reports, bad, move, left_down, left_up
		printf "side_down=%d side_up=%d extra_down=%d extra_up=%d ", side_down, side_up, extra_down, extra_up
		printf "saw_wheel=%d wheel_events=%d wheel_total=%d wheel_ok=%d wheel_bad=%d wheel_last=%d ", saw_w, we, wt, wok, wbad, wlast
		printf "saw_hwheel=%d hwheel_events=%d hwheel_total=%d hwheel_ok=%d hwheel_bad=%d hwheel_last=%d\n", saw_h, he, ht, hok, hbad, hlast
	}'

TABLET_AWK="BEGIN { tx = $TABLET_X; ty = $TABLET_Y }"'
	t == 0 && c == 0 {
		reports++
		if (x >= tx - 2 && x <= tx + 2 && y >= ty - 2 && y <= ty + 2) target = 1
		next
	}
	t == 3 && c == 0 { x = v }
	t == 3 && c == 1 { y = v }
	t == 1 && c == 272 && v != 2 { last_left = v; if (v) left_down = 1; else if (left_down) left_up = 1 }
	END {
		printf "tablet_reports=%d move_target=%d left_down=%d left_up=%d last_x=%d last_y=%d last_left=%d\n", reports, target, left_down, left_up, x, y, last_left
	}'

# ---------------------------------------------------------------- the section

test_input() {
	local n_fn n_bound slot missing=0 problem=0 s devices kbd mouse tablet consumer unknown reason irq pnp
	input_scan
	eval "$(awk '$6 == "input" { f++; if ($7 == 1) b++ } END { printf "n_fn=%d n_bound=%d\n", f, b }' "$W/pci.list")"
	problem=$((n_fn - n_bound))
	for slot in $(pci_slots input); do
		virtio_of "$slot" && [ -e "$PCI/$slot/$VDEV/driver" ] || missing=$((missing + 1))
	done

	if [ "$n_fn" = 0 ]; then
		if [ "$ALLOW_TRANSITIONAL" = 1 ]; then
			say "virtio-input: no virtio-input PCI function; not required with --allow-transitional"
			emit TEST virtio-input-bind SKIP reason=pci_device_missing devices=0
			emit TEST virtio-input-binding SKIP reason=pci_device_missing
			emit TEST virtio-input SKIP devices=0 keyboard_devices=0 consumer_devices=0 mouse_devices=0 \
				ambiguous_devices=0 unknown_devices=0 keyboard_collections=0 consumer_collections=0 mouse_collections=0 \
				tablet_devices=0 tablet_collections=0 reason=pci_device_missing irq_mode=none irq_message_count=0
		else
			say "virtio-input: PCI\\VEN_1AF4&DEV_1052 device not detected (contract v1 modern-only)"
			emit TEST virtio-input-bind FAIL reason=driver_not_bound "expected=$(pci_expected input)" "actual=<missing>" \
				pnp_id=- devices=0 wrong_service=0 missing_service=0 problem=0
			emit TEST virtio-input-binding FAIL reason=driver_not_bound "expected=$(pci_expected input)"
			emit TEST virtio-input FAIL devices=0 keyboard_devices=0 consumer_devices=0 mouse_devices=0 \
				ambiguous_devices=0 unknown_devices=0 keyboard_collections=0 consumer_collections=0 mouse_collections=0 \
				tablet_devices=0 tablet_collections=0 reason=pci_device_missing irq_mode=none irq_message_count=0
			fail_result
		fi
		emit TEST virtio-input-tablet SKIP not_present tablet_devices=0 tablet_collections=0
		say "virtio-input-irq|WARN|reason=device_missing"
		input_msix
		input_led
		input_events
		input_media_keys
		input_tablet_events
		return
	fi

	pci_get input
	pnp=$(pnp_id)
	if [ "$n_bound" = 0 ]; then
		say "virtio-input: $P_ID (rev $P_REV) is not an Aero contract device ($(pci_expected input))"
		emit TEST virtio-input-bind FAIL $(unbound_fields input) actual=- "pnp_id=$pnp" "devices=$n_fn" \
			wrong_service=0 "missing_service=$missing" "problem=$problem"
		emit TEST virtio-input-binding FAIL $(unbound_fields input) "pnp_id=$pnp" "hwid0=$pnp"
		reason=driver_not_bound
	elif [ "$missing" -ge "$n_fn" ]; then
		emit TEST virtio-input-bind FAIL reason=driver_not_bound "expected=$(pci_expected input)" actual=- \
			"pnp_id=$pnp" "devices=$n_fn" wrong_service=0 "missing_service=$missing" "problem=$problem"
		emit TEST virtio-input-binding FAIL reason=driver_not_bound "pnp_id=$pnp" "expected=$(pci_expected input)"
		reason=driver_not_bound
	else
		emit TEST virtio-input-bind PASS service=virtio_input "pnp_id=$pnp" "devices=$n_fn" wrong_service=0 \
			"missing_service=$missing" "problem=$problem"
		emit TEST virtio-input-binding PASS service=virtio_input "pnp_id=$pnp" "hwid0=$pnp"
		reason=-
	fi

	# the nodes of the bound functions, by kind
	eval "$(awk '$2 == 1 { n[$4]++; d++; if ($4 == "keyboard" && $5 == 1) c++ }
		END { printf "devices=%d kbd=%d mouse=%d tablet=%d unknown=%d consumer=%d\n", d, n["keyboard"], n["mouse"], n["tablet"], n["unknown"], c }' \
		"$W/input.list")"
	if [ "$reason" = - ]; then
		if [ "$devices" = 0 ]; then
			reason=no_matching_hid_devices
		elif [ "$kbd" = 0 ]; then
			reason=missing_keyboard_device
		elif [ "$mouse" = 0 ]; then
			reason=missing_mouse_device
		fi
	fi
	s=$(input_slot "$(input_node keyboard)")
	if [ -z "$s" ]; then
		pci_get input
		s=$P_SLOT
	fi
	irq=$(irq_fields "$s")
	say "virtio-input: devices=$devices keyboard=$kbd mouse=$mouse tablet=$tablet ($(clean "$(input_names)"))"
	set -- "devices=$devices" "keyboard_devices=$kbd" "consumer_devices=$consumer" "mouse_devices=$mouse" \
		ambiguous_devices=0 "unknown_devices=$unknown" "keyboard_collections=$kbd" "consumer_collections=$consumer" \
		"mouse_collections=$mouse" "tablet_devices=$tablet" "tablet_collections=$tablet" "reason=$reason" $irq
	if [ "$reason" = - ]; then
		emit TEST virtio-input PASS "$@"
	else
		emit TEST virtio-input FAIL "$@"
		fail_result
	fi
	if [ "$tablet" -gt 0 ]; then
		emit TEST virtio-input-tablet PASS "tablet_devices=$tablet" "tablet_collections=$tablet"
	else
		emit TEST virtio-input-tablet SKIP not_present tablet_devices=0 tablet_collections=0
	fi
	irq_line virtio-input "$s"
	input_msix
	input_led
	input_events
	input_media_keys
	input_tablet_events
}

# input_names: "event2=QEMU Virtio Keyboard, ..." for the log
input_names() {
	local slot bound e k c n
	while read -r slot bound e k c; do
		read -r n < "/sys/class/input/$e/device/name"
		printf '%s=%s(%s) ' "$e" "$n" "$k"
		[ "$k" = mouse ] && printf 'rel=%s ' "$(cat "/sys/class/input/$e/device/capabilities/rel")"
	done < "$W/input.list"
}

# input_msix: interrupt mode over the keyboard and mouse functions
input_msix() {
	local slot msix=0 intx=0 unk=0 mode messages=0 mapping=unknown INTERRUPTS
	INTERRUPTS=$(cat /proc/interrupts)
	for slot in $(awk '$2 == 1 && ($4 == "keyboard" || $4 == "mouse") { print $1 }' "$W/input.list" | sort -u); do
		pci_irq "$slot"
		case "$IRQ_MODE" in
			msix | msi)
				msix=$((msix + 1))
				messages=$((messages + IRQ_COUNT))
				virtio_of "$slot"
				case "$INTERRUPTS" in
					*" $VDEV-events"*) mapping=per-queue ;;
					*" $VDEV-virtqueues"*) mapping=shared ;;
				esac
				;;
			intx) intx=$((intx + 1)) ;;
			*) unk=$((unk + 1)) ;;
		esac
	done
	if [ $((msix + intx + unk)) = 0 ]; then
		if [ "$REQUIRE_INPUT_MSIX" = 1 ]; then
			emit TEST virtio-input-msix FAIL reason=device_missing
			fail_result
		else
			emit TEST virtio-input-msix SKIP reason=device_missing
		fi
		return
	fi
	if [ "$intx$unk" = 00 ]; then
		mode=msix
	elif [ "$msix$unk" = 00 ]; then
		mode=intx
		mapping=intx
	else
		mode=unknown
	fi
	set -- "mode=$mode" "messages=$messages" "mapping=$mapping" "msix_devices=$msix" "intx_devices=$intx" \
		"unknown_devices=$unk"
	if [ "$REQUIRE_INPUT_MSIX" = 1 ] && [ "$mode" != msix ]; then
		say "virtio-input-msix: --require-input-msix set but mode=$mode"
		emit TEST virtio-input-msix FAIL "$@"
		fail_result
	else
		emit TEST virtio-input-msix PASS "$@"
	fi
}

# ---------------------------------------------------------------- LED (output reports)

# led_event VALUE: one EV_LED/LED_CAPSL input_event (24 bytes; the time is ignored on write)
led_event() {
	printf '\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\021\000\001\000\00'"$1"'\000\000\000'
}

# input_led: LED writes through the keyboard's evdev node: the kernel passes each change to the
# virtio_input driver, which queues it on the device's status queue; QEMU completes the buffers and
# signals the queue's interrupt, which is what is counted (the Windows guest counts statusq
# completions in its driver).
input_led() {
	local kbd slot vdev name before after i sent=0 t0
	if [ "$TEST_INPUT_LED" != 1 ]; then
		emit TEST virtio-input-led SKIP flag_not_set
		emit TEST virtio-input-leds SKIP flag_not_set
		return
	fi
	kbd=$(input_node keyboard)
	if [ -z "$kbd" ]; then
		emit TEST virtio-input-led FAIL reason=missing_keyboard_device err=2 sent=0 format=evdev led=capslock
		emit TEST virtio-input-leds FAIL reason=missing_keyboard_device err=2 writes=0
		fail_result
		return
	fi
	slot=$(input_slot "$kbd")
	virtio_of "$slot"
	vdev=$VDEV
	for name in "$vdev-status" "$vdev-virtqueues" "$vdev"; do
		grep -q "[ ,]$name\(,\|\$\)" /proc/interrupts && break
	done
	before=$(irq_count "$name")
	i=0
	while [ "$i" -lt 32 ]; do
		led_event $(((i + 1) % 2)) > "/dev/input/$kbd" 2>> "$W/led.err" && sent=$((sent + 1))
		i=$((i + 1))
	done
	t0=$(now_ms)
	while :; do
		after=$(irq_count "$name")
		[ "$after" -gt "$before" ] && break
		[ $(($(now_ms) - t0)) -ge 5000 ] && break
		usleep 100000
	done
	set -- "sent=$sent" format=evdev led=capslock "statusq_interrupts=$((after - before))" "irq_name=$name"
	if [ "$sent" != 32 ]; then
		emit TEST virtio-input-led FAIL reason=write_not_processed err=31 "$@"
		emit TEST virtio-input-leds FAIL reason=write_not_processed err=31 "writes=$sent"
		fail_result
	elif [ "$after" -le "$before" ]; then
		emit TEST virtio-input-led FAIL reason=timeout_waiting_statusq_completions err=1460 "$@"
		emit TEST virtio-input-leds FAIL reason=timeout_waiting_statusq_completions err=1460 "writes=$sent"
		fail_result
	else
		emit TEST virtio-input-led PASS "$@"
		emit TEST virtio-input-leds PASS "writes=$sent"
	fi
}

# ---------------------------------------------------------------- host-injected events

input_events() {
	local kbd mouse t t0 deadline wait_ms extended=0 base_ok=0 ext_ok=0 reason=timeout err=1460
	local kbd_reports=0 kbd_bad=0 kbd_a_down=0 kbd_a_up=0 shift_b=0 ctrl_down=0 ctrl_up=0 alt_down=0 alt_up=0
	local f1_down=0 f1_up=0 vol_down=0 vol_up=0 mouse_reports=0 mouse_bad=0 mouse_move=0 mouse_left_down=0
	local mouse_left_up=0 side_down=0 side_up=0 extra_down=0 extra_up=0 saw_wheel=0 wheel_events=0 wheel_total=0
	local wheel_ok=0 wheel_bad=0 wheel_last=0 saw_hwheel=0 hwheel_events=0 hwheel_total=0 hwheel_ok=0 hwheel_bad=0
	local hwheel_last=0 wheel_axes_ok=0
	if [ "$TEST_INPUT_EVENTS" != 1 ]; then
		for t in virtio-input-events virtio-input-wheel virtio-input-events-modifiers virtio-input-events-buttons \
			virtio-input-events-wheel; do
			emit TEST "$t" SKIP flag_not_set
		done
		return
	fi
	[ "$TEST_INPUT_MODIFIERS$TEST_INPUT_BUTTONS$TEST_INPUT_WHEEL" = 000 ] || extended=1
	wait_ms=$INPUT_WAIT_MS
	[ "$extended" = 1 ] && wait_ms=$INPUT_WAIT_EXTENDED_MS
	wait_ms=$(host_wait_ms "$wait_ms")
	kbd=$(input_node keyboard)
	mouse=$(input_node mouse)
	if [ -z "$kbd" ]; then
		reason=missing_keyboard_device err=2
	elif [ -z "$mouse" ]; then
		reason=missing_mouse_device err=2
		[ "$(input_count tablet 1)" = 0 ] || reason=no_relative_mouse_device_found_only_absolute_pointer
	elif ! ev_start kbd "$kbd"; then
		ev_stop kbd
		reason=open_keyboard_failed err=5
	elif ! ev_start mouse "$mouse"; then
		ev_stop kbd mouse
		reason=open_mouse_failed err=5
	else
		emit TEST virtio-input-events READY
		t0=$(now_ms)
		deadline=$((t0 + wait_ms))
		while :; do
			usleep 200000
			eval "$(ev_decode kbd "$KBD_AWK")"
			eval "$(ev_decode mouse "$MOUSE_AWK")"
			base_ok=0
			[ "$kbd_a_down$kbd_a_up$mouse_move$mouse_left_down$mouse_left_up" = 11111 ] && base_ok=1
			ext_ok=1
			[ "$TEST_INPUT_MODIFIERS" = 1 ] && [ "$shift_b$ctrl_down$ctrl_up$alt_down$alt_up$f1_down$f1_up" != 1111111 ] && ext_ok=0
			[ "$TEST_INPUT_BUTTONS" = 1 ] && [ "$side_down$side_up$extra_down$extra_up" != 1111 ] && ext_ok=0
			wheel_axes_ok=0
			[ "$saw_wheel$saw_hwheel$wheel_ok$hwheel_ok$wheel_bad$hwheel_bad" = 111100 ] && wheel_axes_ok=1
			[ "$TEST_INPUT_WHEEL" = 1 ] && [ "$wheel_axes_ok" != 1 ] && ext_ok=0
			if [ "$base_ok$ext_ok" = 11 ]; then
				reason=- err=0
				if [ "$extended" = 0 ] && [ "$saw_wheel$saw_hwheel" != 11 ]; then
					usleep 300000 # a grace for scrolling that trails the buttons (the real guest: 250 ms)
					eval "$(ev_decode mouse "$MOUSE_AWK")"
					wheel_axes_ok=0
					[ "$saw_wheel$saw_hwheel$wheel_ok$hwheel_ok$wheel_bad$hwheel_bad" = 111100 ] && wheel_axes_ok=1
				fi
				break
			fi
			[ "$(now_ms)" -lt "$deadline" ] || break
		done
		ev_stop kbd mouse
		say "virtio-input-events: kbd=$kbd mouse=$mouse waited_ms=$(($(now_ms) - t0)) mouse_codes=$(ev_codes mouse)" \
			"wheel_reports=$wheel_events hwheel_reports=$hwheel_events wheel_unexpected=$wheel_bad" \
			"hwheel_unexpected=$hwheel_bad"
	fi
	set -- "kbd_reports=$kbd_reports" "mouse_reports=$mouse_reports" "kbd_bad_reports=$kbd_bad" \
		"mouse_bad_reports=$mouse_bad" "kbd_a_down=$kbd_a_down" "kbd_a_up=$kbd_a_up" "mouse_move=$mouse_move" \
		"mouse_left_down=$mouse_left_down" "mouse_left_up=$mouse_left_up"
	if [ "$base_ok" = 1 ]; then
		emit TEST virtio-input-events PASS "$@"
	else
		emit TEST virtio-input-events FAIL "reason=$reason" "err=$err" "$@"
		fail_result
	fi

	# virtio-input-wheel (the real guest's order of checks): both axes, each report +1 / -2
	set -- "wheel_total=$wheel_total" "hwheel_total=$hwheel_total"
	if [ "$base_ok" != 1 ]; then
		emit TEST virtio-input-wheel SKIP input_events_failed "reason=$reason" "err=$err" "$@"
	elif [ "$saw_wheel$saw_hwheel" = 00 ]; then
		emit TEST virtio-input-wheel SKIP not_observed "$@"
	elif [ "$saw_wheel$saw_hwheel" != 11 ]; then
		emit TEST virtio-input-wheel FAIL reason=missing_axis "$@" "saw_wheel=$saw_wheel" "saw_hwheel=$saw_hwheel"
	elif [ "$wheel_bad$hwheel_bad" != 00 ]; then
		emit TEST virtio-input-wheel FAIL reason=unexpected_delta "$@" "expected_wheel=$EXPECTED_WHEEL" \
			"expected_hwheel=$EXPECTED_HWHEEL" "wheel_events=$wheel_events" "hwheel_events=$hwheel_events" \
			"wheel_unexpected_last=$wheel_last" "hwheel_unexpected_last=$hwheel_last"
	elif [ "$wheel_ok$hwheel_ok" = 11 ]; then
		emit TEST virtio-input-wheel PASS "$@" "expected_wheel=$EXPECTED_WHEEL" "expected_hwheel=$EXPECTED_HWHEEL" \
			"wheel_events=$wheel_events" "hwheel_events=$hwheel_events"
	else
		emit TEST virtio-input-wheel FAIL reason=delta_mismatch "$@" "expected_wheel=$EXPECTED_WHEEL" \
			"expected_hwheel=$EXPECTED_HWHEEL" "wheel_events=$wheel_events" "hwheel_events=$hwheel_events" \
			"saw_wheel_expected=$wheel_ok" "saw_hwheel_expected=$hwheel_ok"
	fi

	if [ "$TEST_INPUT_MODIFIERS" != 1 ]; then
		emit TEST virtio-input-events-modifiers SKIP flag_not_set
	elif [ "$base_ok" = 1 ] && [ "$shift_b$ctrl_down$ctrl_up$alt_down$alt_up$f1_down$f1_up" = 1111111 ]; then
		emit TEST virtio-input-events-modifiers PASS "kbd_reports=$kbd_reports" "kbd_bad_reports=$kbd_bad" \
			"shift_b=$shift_b" ctrl=1 alt=1 f1=1
	else
		emit TEST virtio-input-events-modifiers FAIL "reason=$(sub_reason)" "err=$err" "kbd_reports=$kbd_reports" \
			"kbd_bad_reports=$kbd_bad" "shift_b=$shift_b" "ctrl_down=$ctrl_down" "ctrl_up=$ctrl_up" \
			"alt_down=$alt_down" "alt_up=$alt_up" "f1_down=$f1_down" "f1_up=$f1_up"
		fail_result
	fi
	set -- "mouse_reports=$mouse_reports" "mouse_bad_reports=$mouse_bad" "side_down=$side_down" "side_up=$side_up" \
		"extra_down=$extra_down" "extra_up=$extra_up"
	if [ "$TEST_INPUT_BUTTONS" != 1 ]; then
		emit TEST virtio-input-events-buttons SKIP flag_not_set
	elif [ "$base_ok" = 1 ] && [ "$side_down$side_up$extra_down$extra_up" = 1111 ]; then
		emit TEST virtio-input-events-buttons PASS "$@"
	else
		emit TEST virtio-input-events-buttons FAIL "reason=$(sub_reason)" "err=$err" "$@"
		fail_result
	fi
	set -- "mouse_reports=$mouse_reports" "mouse_bad_reports=$mouse_bad" "wheel_total=$wheel_total" \
		"hwheel_total=$hwheel_total" "expected_wheel=$EXPECTED_WHEEL" "expected_hwheel=$EXPECTED_HWHEEL" \
		"saw_wheel=$saw_wheel" "saw_hwheel=$saw_hwheel"
	if [ "$TEST_INPUT_WHEEL" != 1 ]; then
		emit TEST virtio-input-events-wheel SKIP flag_not_set
	elif [ "$base_ok$wheel_axes_ok" = 11 ]; then
		emit TEST virtio-input-events-wheel PASS "$@"
	else
		emit TEST virtio-input-events-wheel FAIL "reason=$(sub_reason)" "err=$err" "$@"
		fail_result
	fi
}

# sub_reason: an extended subtest's failure reason (the base test's, else a timeout)
sub_reason() {
	if [ "$reason" = - ]; then
		echo timeout
	else
		echo "$reason"
	fi
}

# input_wait NAME AWK MS CONDITION: decode every 200 ms until CONDITION (a shell test over the
# decoded variables) holds or MS passed; returns 0 when it held
input_wait() {
	local deadline=$(($(now_ms) + $3))
	while :; do
		usleep 200000
		eval "$(ev_decode "$1" "$2")"
		eval "$4" && return 0
		[ "$(now_ms)" -lt "$deadline" ] || return 1
	done
}

input_media_keys() {
	local kbd reason=timeout err=1460 ok=1 kbd_reports=0 vol_down=0 vol_up=0
	if [ "$TEST_INPUT_MEDIA_KEYS" != 1 ]; then
		emit TEST virtio-input-media-keys SKIP flag_not_set
		return
	fi
	# Linux delivers consumer keys (KEY_VOLUMEUP) on the keyboard's own evdev node.
	kbd=$(awk '$2 == 1 && $4 == "keyboard" && $5 == 1 { print $3; exit }' "$W/input.list")
	if [ -z "$kbd" ]; then
		reason=missing_consumer_device err=2 ok=0
	elif ! ev_start media "$kbd"; then
		ev_stop media
		reason=open_consumer_failed err=5 ok=0
	else
		emit TEST virtio-input-media-keys READY
		if input_wait media "$KBD_AWK" "$(host_wait_ms "$INPUT_WAIT_MS")" '[ "$vol_down$vol_up" = 11 ]'; then
			reason=-
		else
			ok=0
		fi
		ev_stop media
	fi
	set -- "reports=$kbd_reports" "volume_up_down=$vol_down" "volume_up_up=$vol_up"
	if [ "$ok" = 1 ]; then
		emit TEST virtio-input-media-keys PASS "$@"
	else
		emit TEST virtio-input-media-keys FAIL "reason=$reason" "err=$err" "$@"
		fail_result
	fi
}

input_tablet_events() {
	local tab ok=1 reason=timeout err=1460 tablet_reports=0 move_target=0 left_down=0 left_up=0 last_x=0 last_y=0
	local last_left=0
	if [ "$TEST_INPUT_TABLET_EVENTS" != 1 ]; then
		emit TEST virtio-input-tablet-events SKIP flag_not_set
		return
	fi
	tab=$(input_node tablet)
	if [ -z "$tab" ]; then
		emit TEST virtio-input-tablet-events SKIP no_tablet_device
		return
	fi
	if ! ev_start tablet "$tab"; then
		ev_stop tablet
		reason=open_tablet_failed err=5 ok=0
	else
		emit TEST virtio-input-tablet-events READY
		if input_wait tablet "$TABLET_AWK" "$(host_wait_ms "$INPUT_WAIT_MS")" '[ "$move_target$left_down$left_up" = 111 ]'; then
			reason=-
		else
			ok=0
		fi
		ev_stop tablet
	fi
	set -- "tablet_reports=$tablet_reports" "move_target=$move_target" "left_down=$left_down" "left_up=$left_up" \
		"last_x=$last_x" "last_y=$last_y" "last_left=$last_left"
	if [ "$ok" = 1 ]; then
		emit TEST virtio-input-tablet-events PASS "$@"
	else
		emit TEST virtio-input-tablet-events FAIL "reason=$reason" "err=$err" "$@"
		fail_result
	fi
}
