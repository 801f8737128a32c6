# virtio-blk section of the selftest (sourced by selftest.sh): virtio-blk-msix, -counters,
# -reset-recovery, virtio-blk, the virtio-blk-irq line, virtio-blk-resize, virtio-blk-reset.

BLK_DISK=
BLK_DEV=
BLK_SLOT=
BLK_OK=0

have_vd_partition() {
	ls /sys/block/vd*/vd* > /dev/null 2>&1
}

# blk_find_volume: mount the FAT partition that holds /aero/ID (BLK_DEV, BLK_DISK)
blk_find_volume() {
	local p
	wait_until 100 have_vd_partition
	for p in /sys/block/vd*/vd*; do
		[ -e "$p/partition" ] || continue
		if mount -t vfat -o rw,noatime "/dev/${p##*/}" "$BLK_MOUNT" 2>> "$W/blk.err"; then
			if [ -f "$BLK_MOUNT/aero/ID" ]; then
				BLK_DEV=/dev/${p##*/}
				p=${p%/*}
				BLK_DISK=${p##*/}
				return 0
			fi
			umount "$BLK_MOUNT"
		fi
	done
	return 1
}

# blk_root: the test directory (--blk-root, a Windows path like D:\aero-test\ taken relative to the volume)
blk_root() {
	local r
	r=$(printf '%s' "$OPT_BLK_ROOT" | sed 's/^[A-Za-z]://' | tr '\\' / | sed 's|^/*||; s|/*$||')
	echo "$BLK_MOUNT/${r:-aero-selftest}"
}

# blk_io ROOT: write, flush, read back and verify (sets the io_* variables)
blk_io() {
	local root=$1 t0 t1 t2 t3 count
	io_bytes=$((OPT_IO_SIZE_MIB * 1048576))
	io_write_ok=0 io_flush_ok=0 io_read_ok=0 io_verify_ok=0 io_read_bytes=0
	count=$((io_bytes / (OPT_IO_CHUNK_KIB * 1024)))
	[ "$count" -gt 0 ] || count=1
	mkdir -p "$root"
	dd if=/dev/urandom of="$W/blk.src" bs=1M count="$OPT_IO_SIZE_MIB" 2> /dev/null
	t0=$(now)
	dd if="$W/blk.src" of="$root/blk-test.bin" bs="${OPT_IO_CHUNK_KIB}k" conv=fsync 2>> "$W/blk.err" && io_write_ok=1
	t1=$(now)
	sync && echo 3 > /proc/sys/vm/drop_caches && io_flush_ok=1
	t2=$(now)
	dd if="$root/blk-test.bin" of="$W/blk.back" bs="${OPT_IO_CHUNK_KIB}k" 2>> "$W/blk.err" && io_read_ok=1
	t3=$(now)
	[ -f "$W/blk.back" ] && io_read_bytes=$(stat -c %s "$W/blk.back")
	cmp -s "$W/blk.src" "$W/blk.back" && io_verify_ok=1
	io_write_mbps=$(mbps "$io_bytes" "$t0" "$t1")
	io_read_mbps=$(mbps "$io_read_bytes" "$t2" "$t3")
	rm -f "$root/blk-test.bin" "$W/blk.src" "$W/blk.back"
	rmdir "$root" 2> /dev/null
	sync
}

test_blk() {
	local status mode root
	if ! blk_find_volume; then
		emit TEST virtio-blk-msix SKIP reason=no_volume
		if ! pci_get blk; then
			emit TEST virtio-blk FAIL reason=pci_device_missing irq_mode=none irq_message_count=0
		else
			emit TEST virtio-blk FAIL reason=no_volume $(irq_fields "$P_SLOT") "disks=$(clean "$(ls /sys/block)")" \
				"error=$(clean "$(tail -n 2 "$W/blk.err" 2> /dev/null)")"
		fi
		fail_result
		blk_resize
		blk_reset
		return
	fi
	BLK_SLOT=$(pci_of "/sys/block/$BLK_DISK/device")
	pci_get blk "$BLK_SLOT" || pci_get blk
	pci_irq "$BLK_SLOT"
	mode=$IRQ_MODE
	[ "$mode" = msi ] && mode=msix # as the Windows guest reports an MSI miniport
	if [ "$P_BOUND" = 1 ]; then
		emit TEST virtio-blk-msix PASS "mode=$mode" "messages=$IRQ_COUNT"
	else
		emit TEST virtio-blk-msix SKIP reason=driver_not_bound
	fi
	emit TEST virtio-blk-counters SKIP reason=not_supported
	emit TEST virtio-blk-reset-recovery SKIP reason=not_supported

	if [ "$P_BOUND" != 1 ]; then
		umount "$BLK_MOUNT" 2>> "$W/blk.err"
		say "virtio-blk: $P_ID (rev $P_REV) is not an Aero contract device ($(pci_expected blk))"
		emit TEST virtio-blk FAIL $(unbound_fields blk) $(irq_fields "$BLK_SLOT") "dev=$BLK_DEV"
		fail_result
		irq_line virtio-blk "$BLK_SLOT"
		blk_resize
		blk_reset
		return
	fi

	root=$(blk_root)
	say "virtio-blk: test_file=$root/blk-test.bin size_mib=$OPT_IO_SIZE_MIB chunk_kib=$OPT_IO_CHUNK_KIB"
	blk_io "$root"
	umount "$BLK_MOUNT" 2>> "$W/blk.err"
	status=FAIL
	[ "$io_write_ok$io_flush_ok$io_read_ok$io_verify_ok" = 1111 ] && [ "$io_read_bytes" = "$io_bytes" ] && status=PASS
	[ "$io_write_ok" = 1 ] && say "virtio-blk: write ok bytes=$io_bytes mbps=$io_write_mbps"
	[ "$io_verify_ok" = 1 ] && say "virtio-blk: readback verify ok bytes=$io_read_bytes"
	set -- $(irq_fields "$BLK_SLOT") "write_ok=$io_write_ok" "write_bytes=$io_bytes" "write_mbps=$io_write_mbps" \
		"flush_ok=$io_flush_ok" "read_ok=$io_read_ok" "read_bytes=$io_read_bytes" "read_mbps=$io_read_mbps" \
		"verify_ok=$io_verify_ok" "dev=$BLK_DEV" fs=vfat
	if [ "$status" = PASS ] && [ "$EXPECT_BLK_MSI" = 1 ] && [ "$mode" != msix ]; then
		say "virtio-blk: --expect-blk-msi set but the device uses $mode interrupts"
		status=FAIL
		set -- reason=expect_blk_msi "$@"
	elif [ "$status" = FAIL ]; then
		set -- reason=io_failed "$@" "error=$(clean "$(tail -n 1 "$W/blk.err" 2> /dev/null)")"
	fi
	emit TEST virtio-blk "$status" "$@"
	if [ "$status" = PASS ]; then
		BLK_OK=1
	else
		fail_result
	fi
	irq_line virtio-blk "$BLK_SLOT"
	blk_resize
	blk_reset
}

blk_bytes() {
	local s
	read -r s < "/sys/block/$1/size" 2> /dev/null || s=0
	echo $((s * 512))
}

# blk_resize: the host grows the disk (QMP block_resize) after READY
blk_resize() {
	local idx old cur t0 deadline
	if [ "$TEST_BLK_RESIZE" != 1 ]; then
		emit TEST virtio-blk-resize SKIP flag_not_set
		return
	fi
	if [ -z "$BLK_DISK" ]; then
		emit TEST virtio-blk-resize FAIL reason=disk_not_found disk=0 old_bytes=0 last_bytes=0 err=2
		fail_result
		return
	fi
	idx=$(awk -v l="${BLK_DISK#vd}" 'BEGIN { print index("abcdefghijklmnopqrstuvwxyz", l) - 1 }')
	old=$(blk_bytes "$BLK_DISK")
	if [ "$old" -le 0 ]; then
		emit TEST virtio-blk-resize FAIL reason=invalid_old_size "disk=$idx" old_bytes=0 last_bytes=0 err=13
		fail_result
		return
	fi
	emit TEST virtio-blk-resize READY "disk=$idx" "old_bytes=$old"
	t0=$(now_ms)
	deadline=$((t0 + $(host_wait_ms 60000)))
	while :; do
		cur=$(blk_bytes "$BLK_DISK")
		if [ "$cur" -gt "$old" ]; then
			say "virtio-blk-resize: capacity $old -> $cur bytes"
			emit TEST virtio-blk-resize PASS "disk=$idx" "old_bytes=$old" "new_bytes=$cur" \
				"elapsed_ms=$(($(now_ms) - t0))"
			return
		fi
		if [ "$cur" -lt "$old" ]; then
			emit TEST virtio-blk-resize FAIL reason=unexpected_shrink "disk=$idx" "old_bytes=$old" "last_bytes=$cur" err=0
			fail_result
			return
		fi
		if [ "$(now_ms)" -ge "$deadline" ]; then
			emit TEST virtio-blk-resize FAIL reason=timeout "disk=$idx" "old_bytes=$old" "last_bytes=$cur" err=1460
			fail_result
			return
		fi
		usleep 250000
	done
}

have_blk_again() {
	ls "/sys/bus/virtio/devices/$1/block/" 2> /dev/null | grep -q '^vd'
}

# blk_reset: a real device reset: unbind the virtio_blk driver (which resets the device) and
# bind it again, then read the disk's first MiB and compare it with what it was before.
blk_reset() {
	local vdev before after disk
	if [ "$TEST_BLK_RESET" != 1 ]; then
		emit TEST virtio-blk-reset SKIP reason=flag_not_set
		return
	fi
	if [ "$BLK_OK" != 1 ]; then
		emit TEST virtio-blk-reset FAIL reason=blk_test_failed err=13
		fail_result
		return
	fi
	vdev=$(readlink -f "/sys/block/$BLK_DISK/device")
	vdev=${vdev##*/}
	before=$(dd if="/dev/$BLK_DISK" bs=64k count=16 2> /dev/null | sha256sum | cut -d' ' -f1)
	if ! echo "$vdev" > /sys/bus/virtio/drivers/virtio_blk/unbind 2>> "$W/blk.err" \
		|| ! echo "$vdev" > /sys/bus/virtio/drivers/virtio_blk/bind 2>> "$W/blk.err"; then
		emit TEST virtio-blk-reset FAIL reason=force_reset_failed err=31
		fail_result
		return
	fi
	if ! wait_until 150 have_blk_again "$vdev"; then
		emit TEST virtio-blk-reset FAIL reason=post_reset_io_failed err=21
		fail_result
		return
	fi
	disk=$(ls "/sys/bus/virtio/devices/$vdev/block/" | grep '^vd' | head -n 1)
	after=$(dd if="/dev/$disk" bs=64k count=16 2> /dev/null | sha256sum | cut -d' ' -f1)
	if [ "$after" = "$before" ]; then
		BLK_DISK=$disk
		say "virtio-blk-reset: driver unbound and bound again (device reset); $disk reads back the same"
		emit TEST virtio-blk-reset PASS performed=1 counter_before=not_supported counter_after=not_supported \
			method=driver_rebind "disk_after=$disk"
	else
		emit TEST virtio-blk-reset FAIL reason=post_reset_io_failed err=23
		fail_result
	fi
}
