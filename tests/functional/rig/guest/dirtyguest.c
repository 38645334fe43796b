/* dirtyguest.c - multiboot test "kernel" for the functional-test rig.
 *
 * Booted by QEMU directly (<kernel>dirtyguest.elf</kernel><cmdline>...</cmdline>), it
 * rewrites one word in every 4 KiB page of an N MiB region at a chosen pace, so a live
 * migration can be made to converge at once, crawl, or never converge. Every `tick` ms it
 * prints a heartbeat on COM1:
 *
 *   dirtyguest tick=<n> pass=<n> pages=<n> pps=<n> kibps=<n> mb=<n> rate=<n>
 *
 * `tick` and `pass` live in guest RAM, so the destination's serial log continues the
 * source's sequence after a migration (that is the proof that the state moved). The
 * whole region is written once at boot, so a migration always has `mb` MiB of non-zero
 * pages to send, however slow the pace.
 * `pages`/`pps`/`kibps` are the pages written during the last tick and the measured dirty
 * rate (pages/s, KiB/s), so a benchmark can compare the real guest with a simulation.
 *
 * Command line (all decimal, all optional):
 *   mb=N      size of the dirtied region in MiB (default 32; 0 = heartbeat only)
 *   rate=N    target dirty rate in MiB/s (default 0 = as fast as the vCPU can go)
 *   delay=N   extra busy-loop iterations after each page write (crude slow-down)
 *   tick=N    heartbeat period in ms (default 1000)
 *   disk=1    also write the heartbeat line to sector 0 of the primary IDE disk every tick
 *
 * Time comes from the TSC, calibrated against PIT channel 2 at boot (QEMU's TCG TSC follows
 * the host clock and stops while the VM is paused). A 1 kHz PIT interrupt lets the guest
 * `hlt` while it is ahead of its pace, so a paced or idle guest leaves the host CPU to the
 * migration thread instead of spinning.
 *
 * Build (no libc, no multilib needed; x86_64 gcc emits 32-bit code with -m32):
 *   gcc -m32 -ffreestanding -fno-pic -fno-pie -fno-stack-protector -nostdlib -O2 -c dirtyguest.c
 *   ld -m elf_i386 -T dirtyguest.ld -o dirtyguest.elf dirtyguest.o
 */
typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

#define MB_MAGIC 0x1BADB002u
#define MB_FLAGS 0x00000000u
__attribute__((section(".multiboot"), used, aligned(4)))
static const u32 mb_header[3] = {MB_MAGIC, MB_FLAGS, (u32) - (MB_MAGIC + MB_FLAGS)};

/* Entry: own stack, own flat GDT (the multiboot spec leaves GDTR undefined), then kmain. */
__asm__(".section .text\n"
        ".globl _start\n"
        "_start:\n"
        "  cli\n"
        "  mov $stack_top, %esp\n"
        "  lgdt gdt_desc\n"
        "  ljmp $0x08, $1f\n"
        "1:\n"
        "  mov $0x10, %ax\n"
        "  mov %ax, %ds\n"
        "  mov %ax, %es\n"
        "  mov %ax, %ss\n"
        "  mov %ax, %fs\n"
        "  mov %ax, %gs\n"
        "  push %ebx\n" /* multiboot info pointer */
        "  call kmain\n"
        "2: hlt\n"
        "  jmp 2b\n"
        /* IRQ0 (vector 32): count, EOI to the master PIC */
        ".globl irq0_stub\n"
        "irq0_stub:\n"
        "  push %eax\n"
        "  incl irq_count\n"
        "  mov $0x20, %al\n"
        "  out %al, $0x20\n"
        "  pop %eax\n"
        "  iret\n"
        /* anything else (spurious IRQ7/15 etc.): ignore */
        ".globl ignore_stub\n"
        "ignore_stub:\n"
        "  iret\n"
        ".section .rodata\n"
        ".align 8\n"
        "gdt:\n"
        "  .quad 0\n"
        "  .quad 0x00CF9A000000FFFF\n" /* 0x08: code, flat 4 GiB */
        "  .quad 0x00CF92000000FFFF\n" /* 0x10: data, flat 4 GiB */
        "gdt_desc:\n"
        "  .word gdt_desc - gdt - 1\n"
        "  .long gdt\n"
        ".section .bss\n"
        ".align 16\n"
        "  .skip 16384\n"
        "stack_top:\n"
        ".section .text\n");

extern void irq0_stub(void);
extern void ignore_stub(void);
volatile u32 irq_count;

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outw(u16 port, u16 v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) {
    u8 v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline u64 rdtsc(void) {
    u32 lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((u64)hi << 32) | lo;
}

/* 64/32 division without libgcc (not available for -m32 without multilib). */
static u64 udiv64(u64 n, u32 d) {
    u32 hi = (u32)(n >> 32), lo = (u32)n, qhi = hi / d, r = hi % d, qlo;
    __asm__("divl %4" : "=a"(qlo), "=d"(r) : "a"(lo), "d"(r), "rm"(d));
    return ((u64)qhi << 32) | qlo;
}

/* ------------------------------------------------------------------ serial / formatting */
static char line[160];
static u32 line_len;
static void put(const char *s) {
    while (*s && line_len < sizeof(line) - 1) line[line_len++] = *s++;
}
static void putu(u32 v) {
    char buf[11];
    int i = 10;
    buf[i] = 0;
    do { buf[--i] = (char)('0' + v % 10u); v /= 10u; } while (v);
    put(&buf[i]);
}
static void kv(const char *k, u32 v) { put(k); putu(v); }
static void flush_line(void) { /* COM1; QEMU needs no UART setup */
    line[line_len++] = '\n';
    for (u32 i = 0; i < line_len; i++) outb(0x3F8, (u8)line[i]);
}

static u32 param(const char *cmd, const char *key, u32 dflt) {
    if (!cmd) return dflt;
    for (const char *p = cmd; *p; p++) {
        if (p != cmd && p[-1] != ' ') continue; /* match whole keys only */
        const char *a = p, *k = key;
        while (*k && *a == *k) { a++; k++; }
        if (*k == 0 && *a == '=') {
            u32 v = 0;
            for (a++; *a >= '0' && *a <= '9'; a++) v = v * 10u + (u32)(*a - '0');
            return v;
        }
    }
    return dflt;
}

/* ------------------------------------------------------------------ interrupts / timers */
struct idt_entry { u16 off_lo, sel; u8 zero, type; u16 off_hi; } __attribute__((packed));
static struct idt_entry idt[256];
static struct { u16 limit; u32 base; } __attribute__((packed)) idt_desc;

static void set_gate(int n, void (*fn)(void)) {
    u32 a = (u32)fn;
    idt[n] = (struct idt_entry){(u16)a, 0x08, 0, 0x8E, (u16)(a >> 16)};
}

static void setup_interrupts(void) {
    for (int i = 0; i < 256; i++) set_gate(i, ignore_stub);
    set_gate(32, irq0_stub);
    idt_desc.limit = sizeof(idt) - 1;
    idt_desc.base = (u32)idt;
    __asm__ volatile("lidt %0" : : "m"(idt_desc));
    /* remap the PICs to vectors 32..47, unmask IRQ0 only */
    outb(0x20, 0x11); outb(0xA0, 0x11);
    outb(0x21, 0x20); outb(0xA1, 0x28);
    outb(0x21, 0x04); outb(0xA1, 0x02);
    outb(0x21, 0x01); outb(0xA1, 0x01);
    outb(0x21, 0xFE); outb(0xA1, 0xFF);
    /* PIT channel 0, mode 2, ~1 kHz: only used to wake up from hlt */
    outb(0x43, 0x34); outb(0x40, 1193 & 0xFF); outb(0x40, 1193 >> 8);
    __asm__ volatile("sti");
}

/* TSC ticks in 50 ms, measured with PIT channel 2 in one-shot mode (polled, no IRQ). */
static u32 calibrate_tsc_50ms(void) {
    const u32 latch = 1193182u / 20u;
    outb(0x61, (u8)((inb(0x61) & ~0x02) | 0x01)); /* gate on, speaker off */
    outb(0x43, 0xB0);                              /* ch2, lo/hi, mode 0 */
    outb(0x42, latch & 0xFF);
    outb(0x42, (u8)(latch >> 8));
    u64 t0 = rdtsc();
    while (!(inb(0x61) & 0x20)) { }
    return (u32)(rdtsc() - t0);
}

/* ------------------------------------------------------------------ ATA PIO (disk=1) */
static int ata_wait(u8 want) {
    for (u32 i = 0; i < 10000000u; i++) {
        u8 s = inb(0x1F7);
        if (s & 0x01) return -1; /* ERR */
        if (!(s & 0x80) && (s & want) == want) return 0;
    }
    return -1;
}

static int ata_write_sector0(const char *text, u32 len) {
    if (inb(0x1F7) == 0xFF) return -1; /* floating bus: no controller/disk */
    outb(0x1F6, 0xE0);                  /* master, LBA mode, LBA[27:24]=0 */
    outb(0x1F2, 1);
    outb(0x1F3, 0); outb(0x1F4, 0); outb(0x1F5, 0);
    outb(0x1F7, 0x30); /* WRITE SECTORS */
    if (ata_wait(0x08)) return -1;
    for (u32 i = 0; i < 256; i++) {
        u32 a = 2 * i, b = 2 * i + 1;
        u8 lo = a < len ? (u8)text[a] : 0, hi = b < len ? (u8)text[b] : 0;
        outw(0x1F0, (u16)(lo | (hi << 8)));
    }
    if (ata_wait(0)) return -1;
    outb(0x1F7, 0xE7); /* FLUSH CACHE, so the image file has it now */
    return ata_wait(0);
}

/* ------------------------------------------------------------------ main loop */
static volatile u32 tick, pass; /* in guest RAM: migrate with the guest */

void kmain(const u32 *mbi) {
    const char *cmd = (mbi[0] & 4u) ? (const char *)mbi[4] : 0;
    u32 mem_upper_kb = (mbi[0] & 1u) ? mbi[2] : 0;
    u32 mb = param(cmd, "mb", 32), rate = param(cmd, "rate", 0);
    u32 delay = param(cmd, "delay", 0), tick_ms = param(cmd, "tick", 1000);
    u32 disk = param(cmd, "disk", 0);
    const u32 base = 8u << 20; /* dirty from 8 MiB up, well above kernel, stack and mbi */
    u32 avail_mb = mem_upper_kb / 1024u > 9u ? mem_upper_kb / 1024u - 9u : 0;
    if (mb > avail_mb) mb = avail_mb;
    if (tick_ms == 0) tick_ms = 1000;
    u32 pages = mb * 256u;

    u32 tsc50 = calibrate_tsc_50ms();
    u64 tsc_hz = (u64)tsc50 * 20u;
    u64 period = udiv64(tsc_hz * tick_ms, 1000u);
    /* pacing: one page write is due every tsc_hz / (rate * 256) TSC ticks */
    u64 per_page = rate ? udiv64(tsc_hz, rate * 256u) : 0;
    setup_interrupts();

    line_len = 0;
    kv("dirtyguest start mb=", mb); kv(" rate=", rate); kv(" delay=", delay);
    kv(" tick=", tick_ms); kv(" disk=", disk); kv(" mem_upper_kb=", mem_upper_kb);
    kv(" tsc_khz=", (u32)udiv64(tsc_hz, 1000u));
    flush_line();

    /* populate the whole region once, flat out: from the first heartbeat on, all `mb` MiB
     * are non-zero, so a migration has to send them even if the pace is slow */
    for (u32 q = 0; q < pages; q++) *(volatile u32 *)(base + (q << 12)) = q ^ 0x5A5A5A5Au;

    u32 p = 0, written = 0;
    u64 last = rdtsc(), due = last;
    for (;;) {
        u64 now = rdtsc();
        if (now - last >= period) {
            u64 el = now - last;
            last = now;
            tick++;
            /* pages/s = written * tsc_hz / el; scale el down to fit the 32-bit divisor */
            u32 pps = (u32)udiv64((u64)written * (u32)(tsc_hz >> 8), (u32)(el >> 8) | 1u);
            line_len = 0;
            kv("dirtyguest tick=", tick); kv(" pass=", pass); kv(" pages=", written);
            kv(" pps=", pps); kv(" kibps=", pps * 4u); kv(" mb=", mb); kv(" rate=", rate);
            if (disk) {
                line[line_len] = '\n';
                if (ata_write_sector0(line, line_len + 1)) put(" disk_error=1");
            }
            flush_line();
            written = 0;
        }
        if (!pages) { /* heartbeat only: sleep until the next timer interrupt */
            __asm__ volatile("hlt");
            continue;
        }
        if (per_page) {
            if ((long long)(now - due) < 0) { /* ahead of pace */
                __asm__ volatile("hlt");
                continue;
            }
            /* paused or migrated for a while: do not burst to catch up */
            if (now - due > period) due = now;
        }
        /* write a small batch per pass through the loop to amortise the rdtsc */
        for (u32 n = 0; n < 16; n++) {
            volatile u32 *w = (volatile u32 *)(base + (p << 12) + ((pass & 1023u) << 2));
            *w = pass ^ (p << 8) ^ 0xA5A5A5A5u;
            for (volatile u32 d = 0; d < delay; d++) { }
            written++;
            if (++p == pages) { p = 0; pass++; }
            if (per_page && (long long)((due += per_page) - now) > 0) break;
        }
    }
}
