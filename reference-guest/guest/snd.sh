# virtio-snd section of the selftest (sourced by selftest.sh): virtio-snd, virtio-snd-capture,
# virtio-snd-duplex, virtio-snd-msix and the virtio-snd-irq line, with the Windows guest's
# decisions: a present device is tested without any flag; --require-snd (--test-snd) makes a
# missing one a failure; --disable-snd skips everything.

SND_SLOT=
SND_PCM= # plughw:C,D of the playback PCM
SND_CAP= # plughw:C,D of the capture PCM

have_pcm() {
	ls /dev/snd/pcmC*D*p > /dev/null 2>&1
}

# pcm_name DIR: plughw:C,D of the first PCM node of direction DIR (p or c)
pcm_name() {
	local pcm name card dev
	pcm=$(ls /dev/snd/pcmC*D*"$1" 2> /dev/null | head -n 1)
	[ -n "$pcm" ] || return 1
	name=${pcm##*/pcmC}
	card=${name%%D*}
	dev=${name#*D}
	echo "plughw:$card,${dev%"$1"}"
}

# non_silence FILE: 1 when any sample is not zero (QEMU's "none" audio backend records zeros)
non_silence() {
	[ "$(tr -d '\000' < "$1" | head -c 1 | wc -c)" -gt 0 ] && echo 1 || echo 0
}

# snd_skip_pair CAPTURE_WORD DUPLEX_WORD: the capture and duplex SKIP markers
snd_skip_pair() {
	emit TEST virtio-snd-capture SKIP "$1"
	emit TEST virtio-snd-duplex SKIP "$2"
}

test_snd() {
	local detected=0 want_play=0 want_cap=0 word
	if pci_get snd; then
		case "$P_ID" in
			1af4:1059) detected=1 ;;
			1af4:1018) [ "$ALLOW_SND_TRANSITIONAL" = 1 ] && detected=1 ;;
		esac
	fi
	[ "$detected" = 1 ] && SND_SLOT=$P_SLOT
	[ "$REQUIRE_SND$REQUIRE_SND_MSIX$detected" = 000 ] || want_play=1
	if [ "$DISABLE_SND_CAPTURE" != 1 ] \
		&& [ "$REQUIRE_SND_CAPTURE$TEST_SND_CAPTURE$REQUIRE_NON_SILENCE$want_play" != 0000 ]; then
		want_cap=1
	fi
	word=flag_not_set
	[ "$DISABLE_SND_CAPTURE" = 1 ] && word=disabled

	if [ "$DISABLE_SND" = 1 ]; then
		say "virtio-snd: disabled by --disable-snd"
		emit TEST virtio-snd SKIP $(snd_irq)
		snd_skip_pair disabled disabled
		snd_msix
		return
	fi
	if [ "$want_play$want_cap" = 00 ]; then
		say "virtio-snd: skipped (enable with --test-snd)"
		emit TEST virtio-snd SKIP $(snd_irq)
		snd_skip_pair "$word" "$word"
		snd_msix
		return
	fi
	if [ "$want_play" = 0 ]; then
		say "virtio-snd: skipped (enable with --test-snd)"
		emit TEST virtio-snd SKIP $(snd_irq)
	fi
	if [ "$detected" = 0 ]; then
		if [ "$ALLOW_SND_TRANSITIONAL" = 1 ]; then
			say "virtio-snd: PCI\\VEN_1AF4&DEV_1059 (or legacy PCI\\VEN_1AF4&DEV_1018) device not detected"
		else
			say "virtio-snd: PCI\\VEN_1AF4&DEV_1059 device not detected (contract v1 modern-only)"
		fi
		if [ "$want_play" = 1 ]; then
			emit TEST virtio-snd FAIL $(snd_irq) reason=device_missing
			fail_result
		fi
		if [ "$DISABLE_SND_CAPTURE" = 1 ]; then
			emit TEST virtio-snd-capture SKIP disabled
		elif [ "$REQUIRE_SND_CAPTURE" = 1 ]; then
			say "virtio-snd: --require-snd-capture set; failing (device missing)"
			emit TEST virtio-snd-capture FAIL device_missing
			fail_result
		else
			emit TEST virtio-snd-capture SKIP device_missing
		fi
		if [ "$DISABLE_SND_CAPTURE" = 1 ]; then
			emit TEST virtio-snd-duplex SKIP disabled
		else
			emit TEST virtio-snd-duplex SKIP device_missing
		fi
		snd_msix
		return
	fi
	if [ "$P_BOUND" != 1 ]; then
		say "virtio-snd: $P_ID (rev $P_REV) is not an Aero contract device ($(pci_expected snd))"
		emit TEST virtio-snd FAIL driver_not_bound $(unbound_fields snd) $(snd_irq)
		fail_result
		if [ "$DISABLE_SND_CAPTURE" = 1 ]; then
			emit TEST virtio-snd-capture SKIP disabled
		elif [ "$REQUIRE_SND_CAPTURE" = 1 ]; then
			say "virtio-snd: --require-snd-capture set; failing (driver binding not healthy)"
			emit TEST virtio-snd-capture FAIL driver_not_bound
		else
			emit TEST virtio-snd-capture SKIP driver_not_bound
		fi
		emit TEST virtio-snd-duplex SKIP "$([ "$DISABLE_SND_CAPTURE" = 1 ] && echo disabled || echo driver_not_bound)"
		snd_msix
		return
	fi

	# (selftest.sh loaded the sound modules before the PCI report)
	if wait_until 100 have_pcm; then
		SND_PCM=$(pcm_name p)
		SND_CAP=$(pcm_name c)
	fi
	# The Windows guest's WASAPI buffer test has no ALSA counterpart here.
	[ "$TEST_SND_BUFFER_LIMITS$want_play" = 11 ] && emit TEST virtio-snd-buffer-limits SKIP not_supported
	[ "$want_play" = 1 ] && snd_playback
	if [ "$want_cap" = 1 ]; then
		snd_capture
		snd_duplex
	else
		snd_skip_pair "$word" "$word"
	fi
	snd_msix
}

# snd_irq: the IRQ fields of the sound function (with the Windows guest's irq_reason when absent)
snd_irq() {
	if [ -n "$SND_SLOT" ]; then
		irq_fields "$SND_SLOT"
	else
		echo irq_mode=none irq_message_count=0 irq_reason=device_missing
	fi
}

snd_playback() {
	local rc t0 t1 reason
	if [ -z "$SND_PCM" ]; then
		say "virtio-snd: no playback PCM device: $(clean "$(dmesg | grep -i snd | tail -n 2)")"
		emit TEST virtio-snd FAIL $(snd_irq) reason=no_pcm_device
		fail_result
		return
	fi
	t0=$(now)
	timeout 20 aplay -q -D "$SND_PCM" "$TONE" > "$W/aplay.err" 2>&1
	rc=$?
	t1=$(now)
	if [ "$rc" = 0 ]; then
		say "virtio-snd: played a 500 Hz tone on $SND_PCM"
		emit TEST virtio-snd PASS $(snd_irq) "device=$SND_PCM" tone_hz=500 rate=48000 channels=2 format=S16_LE \
			frames=48000 "play_secs=$(secs "$t0" "$t1")"
		return
	fi
	case "$rc" in
		124 | 137 | 143) reason=aplay_timeout ;;
		*) reason=aplay_failed ;;
	esac
	say "virtio-snd: aplay failed rc=$rc: $(clean "$(head -n 3 "$W/aplay.err")")"
	emit TEST virtio-snd FAIL $(snd_irq) "reason=$reason" "device=$SND_PCM" "rc=$rc"
	fail_result
}

# record FILE: one second from the capture PCM (raw S16_LE, 48 kHz, stereo); the exit status
record() {
	timeout 20 arecord -q -D "$SND_CAP" -f S16_LE -r 48000 -c 2 -d 1 -t raw "$1" > "$W/arecord.err" 2>&1
}

snd_capture() {
	local rc frames ns
	if [ -z "$SND_CAP" ]; then
		if [ "$REQUIRE_SND_CAPTURE" = 1 ]; then
			say "virtio-snd: --require-snd-capture set; failing"
			emit TEST virtio-snd-capture FAIL endpoint_missing
			fail_result
		else
			say "virtio-snd: no capture endpoint; skipping (use --require-snd-capture to require)"
			emit TEST virtio-snd-capture SKIP endpoint_missing
		fi
		return
	fi
	rm -f "$W/cap.raw"
	record "$W/cap.raw"
	rc=$?
	frames=0
	[ -f "$W/cap.raw" ] && frames=$(($(stat -c %s "$W/cap.raw") / 4))
	if [ "$rc" != 0 ] || [ "$frames" = 0 ]; then
		say "virtio-snd: capture failed reason=arecord_failed rc=$rc frames=$frames: $(clean "$(head -n 2 "$W/arecord.err")")"
		emit TEST virtio-snd-capture FAIL error "rc=$rc" "frames=$frames" "device=$SND_CAP"
		fail_result
		return
	fi
	ns=$(non_silence "$W/cap.raw")
	rm -f "$W/cap.raw"
	if [ "$REQUIRE_NON_SILENCE" = 1 ] && [ "$ns" = 0 ]; then
		say "virtio-snd: --require-non-silence set but the capture is silent"
		emit TEST virtio-snd-capture FAIL silence method=alsa "frames=$frames" non_silence=0 silence_only=1
		fail_result
		return
	fi
	say "virtio-snd: captured $frames frames from $SND_CAP"
	emit TEST virtio-snd-capture PASS method=alsa "frames=$frames" "non_silence=$ns" "silence_only=$((1 - ns))" \
		"device=$SND_CAP"
}

# snd_duplex: play the tone and record at the same time
snd_duplex() {
	local pid rc prc frames
	if [ -z "$SND_CAP" ] || [ -z "$SND_PCM" ]; then
		say "virtio-snd: duplex endpoint missing; skipping (use --require-snd-capture to require)"
		emit TEST virtio-snd-duplex SKIP endpoint_missing
		return
	fi
	rm -f "$W/duplex.raw"
	timeout 20 aplay -q -D "$SND_PCM" "$TONE" > "$W/duplex-play.err" 2>&1 &
	pid=$!
	record "$W/duplex.raw"
	rc=$?
	wait "$pid"
	prc=$?
	frames=0
	[ -f "$W/duplex.raw" ] && frames=$(($(stat -c %s "$W/duplex.raw") / 4))
	if [ "$prc" != 0 ]; then
		emit TEST virtio-snd-duplex FAIL reason=render_failed "rc=$prc"
		fail_result
	elif [ "$rc" != 0 ]; then
		emit TEST virtio-snd-duplex FAIL reason=capture_failed "rc=$rc"
		fail_result
	elif [ "$frames" = 0 ]; then
		emit TEST virtio-snd-duplex FAIL reason=capture_no_frames rc=0
		fail_result
	else
		emit TEST virtio-snd-duplex PASS "frames=$frames" "non_silence=$(non_silence "$W/duplex.raw")"
	fi
	rm -f "$W/duplex.raw"
}

snd_msix() {
	local mode
	if [ -z "$SND_SLOT" ] || [ "$DISABLE_SND" = 1 ]; then
		if [ "$REQUIRE_SND_MSIX" = 1 ]; then
			emit TEST virtio-snd-msix FAIL reason=device_missing
			fail_result
		else
			emit TEST virtio-snd-msix SKIP "reason=$([ "$DISABLE_SND" = 1 ] && echo disabled || echo device_missing)"
		fi
		[ -z "$SND_SLOT" ] || irq_line virtio-snd "$SND_SLOT"
		return
	fi
	pci_irq "$SND_SLOT"
	mode=$IRQ_MODE
	[ "$mode" = msi ] && mode=msix
	if [ "$REQUIRE_SND_MSIX" = 1 ] && [ "$mode" != msix ]; then
		emit TEST virtio-snd-msix FAIL "mode=$mode" "messages=$IRQ_COUNT"
		fail_result
	else
		emit TEST virtio-snd-msix PASS "mode=$mode" "messages=$IRQ_COUNT"
	fi
	irq_line virtio-snd "$SND_SLOT"
}
