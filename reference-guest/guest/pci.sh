# Virtio PCI functions and the Aero drivers' binding rules (contract v1), sourced by selftest.sh.
#
# The Aero drivers bind only these IDs (vendor 1af4): blk 1042, net 1041, input 1052, snd 1059,
# each with revision 01. --allow-transitional also takes QEMU's transitional blk 1001 and net 1000
# (revision 00), as older drivers would; --allow-virtio-snd-transitional takes snd 1018.

PCI=/sys/bus/pci/devices

# pci_scan: $W/pci.list, one line per virtio function: SLOT ID REV SUBSYS CLASS KIND BOUND
pci_scan() {
	local d v dev rev sv sd cls kind bound
	: > "$W/pci.list"
	for d in "$PCI"/*; do
		[ -r "$d/vendor" ] || continue
		read -r v < "$d/vendor"
		[ "$v" = 0x1af4 ] || continue
		read -r dev < "$d/device"
		dev=${dev#0x}
		case "$dev" in
			10[0-7][0-9a-f]) ;;
			*) continue ;; # not virtio (ivshmem and friends share the vendor)
		esac
		read -r rev < "$d/revision"
		read -r sv < "$d/subsystem_vendor"
		read -r sd < "$d/subsystem_device"
		read -r cls < "$d/class"
		rev=${rev#0x}
		case "$dev" in
			1000 | 1041) kind=net ;;
			1001 | 1042) kind=blk ;;
			1011 | 1052) kind=input ;;
			1018 | 1059) kind=snd ;;
			*) kind=other ;;
		esac
		bound=0
		case "$kind:$dev:$rev" in
			blk:1042:01 | net:1041:01 | input:1052:01 | snd:1059:01) bound=1 ;;
			blk:1001:00 | net:1000:00 | input:1011:00) [ "$ALLOW_TRANSITIONAL" = 1 ] && bound=1 ;;
			snd:1018:00) [ "$ALLOW_SND_TRANSITIONAL" = 1 ] && bound=1 ;;
		esac
		echo "${d##*/} 1af4:$dev $rev ${sv#0x}:${sd#0x} ${cls#0x} $kind $bound" >> "$W/pci.list"
	done
}

# pci_irq SLOT: IRQ_MODE (msix, msi, intx; none while no virtio driver uses the device) and
# IRQ_COUNT (vectors)
pci_irq() {
	local d=$PCI/$1 f n=0 mode=
	IRQ_MODE=none
	IRQ_COUNT=0
	[ -n "$1" ] || return 0
	for f in "$d"/virtio*/driver; do
		[ -e "$f" ] && n=1
	done
	[ "$n" = 1 ] || return 0
	n=0
	for f in "$d"/msi_irqs/*; do
		[ -f "$f" ] || continue
		n=$((n + 1))
		[ -n "$mode" ] || read -r mode < "$f"
	done
	if [ "$n" -gt 0 ]; then
		IRQ_MODE=${mode:-msix}
		IRQ_COUNT=$n
	else
		IRQ_MODE=intx
	fi
}

# irq_fields SLOT: the Windows guest's per-test fields
irq_fields() {
	pci_irq "$1"
	echo "irq_mode=$IRQ_MODE irq_message_count=$IRQ_COUNT"
}

# irq_line NAME SLOT: the free-text "<dev>-irq" line (no marker prefix, as the Windows guest)
irq_line() {
	pci_irq "$2"
	case "$IRQ_MODE" in
		none) say "$1-irq|WARN|reason=$([ -n "$2" ] && echo no_interrupt_resources || echo device_missing)" ;;
		intx) say "$1-irq|INFO|mode=intx" ;;
		*) say "$1-irq|INFO|mode=$IRQ_MODE|messages=$IRQ_COUNT" ;;
	esac
}

# pci_report: one INFO marker per virtio function
pci_report() {
	local slot id rev subsys cls kind bound
	while read -r slot id rev subsys cls kind bound; do
		pci_irq "$slot"
		emit TEST virtio-pci INFO "slot=$slot" "id=$id" "rev=$rev" "subsys=$subsys" "class=$cls" "kind=$kind" \
			"bound=$bound" "irq_mode=$IRQ_MODE" "irq_message_count=$IRQ_COUNT"
	done < "$W/pci.list"
}

# pci_get KIND [SLOT]: P_SLOT P_ID P_REV P_SUBSYS P_BOUND of the function at SLOT, else of the
# first bound function of KIND, else of the first one of KIND; fails when there is none.
pci_get() {
	local slot id rev subsys cls kind bound
	P_SLOT= P_ID= P_REV= P_SUBSYS= P_BOUND=0
	while read -r slot id rev subsys cls kind bound; do
		[ "$kind" = "$1" ] || continue
		if [ -n "$2" ]; then
			[ "$slot" = "$2" ] || continue
		elif [ -n "$P_SLOT" ] && { [ "$P_BOUND" = 1 ] || [ "$bound" = 0 ]; }; then
			continue
		fi
		P_SLOT=$slot P_ID=$id P_REV=$rev P_SUBSYS=$subsys P_BOUND=$bound
	done < "$W/pci.list"
	[ -n "$P_SLOT" ]
}

# pci_slots KIND: the slots of KIND
pci_slots() {
	local slot id rev subsys cls kind bound
	while read -r slot id rev subsys cls kind bound; do
		[ "$kind" = "$1" ] && echo "$slot"
	done < "$W/pci.list"
}

# virtio_of SLOT: VDEV, the virtio device (virtioN) of a PCI function (empty when none); no fork
virtio_of() {
	local v
	VDEV=
	for v in "$PCI/$1"/virtio*; do
		[ -e "$v" ] && VDEV=${v##*/} && return 0
	done
	return 1
}

# pci_expected KIND: the contract's ID
pci_expected() {
	case "$1" in
		blk) echo 1af4:1042@01 ;;
		net) echo 1af4:1041@01 ;;
		input) echo 1af4:1052@01 ;;
		snd) echo 1af4:1059@01 ;;
	esac
}

# pnp_id: the Windows hardware ID of the function pci_get chose
pnp_id() {
	local dev=${P_ID#*:} sv=${P_SUBSYS%:*} sd=${P_SUBSYS#*:}
	echo "PCI\\VEN_1AF4&DEV_$(echo "$dev" | tr a-f A-F)&SUBSYS_$(echo "$sd$sv" | tr a-f A-F)&REV_$P_REV"
}

# unbound_fields KIND: why the function pci_get chose is not bound
unbound_fields() {
	echo "reason=driver_not_bound pci_id=$P_ID rev=$P_REV expected=$(pci_expected "$1")"
}

# pci_of SYSFS_DEVICE_LINK: the PCI slot a virtio device hangs off
pci_of() {
	local p
	p=$(readlink -f "$1" 2> /dev/null) || return 1
	p=${p%/virtio*}
	echo "${p##*/}"
}

# irq_count NAME: the total of the /proc/interrupts lines that carry NAME (e.g. virtio2-config;
# an INTx line lists its sharers, "virtio1, virtio2")
irq_count() {
	awk -v name="$1" '
		{ found = 0; for (i = 2; i <= NF; i++) { w = $i; sub(/,$/, "", w); if (w == name) found = 1 } }
		found { for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+$/) n += $i; else break }
		END { print n + 0 }' /proc/interrupts
}
