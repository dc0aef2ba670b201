package multilayer

import (
	"bytes"
	"encoding/binary"
)

// PausePath is where an image built with Shape.Pause has its entrypoint.
const PausePath = "/pause"

// pauseELF is a static x86-64 Linux program of 129 bytes that calls
// pause(2) in a loop: the entrypoint of the large pull images, so that a
// container starts from them without any file of another image (which
// would share a layer, or make the image's digest depend on it). As PID 1
// of its namespace it ignores SIGTERM; its pod's stop kills it.
//
// One ELF header, one loadable segment (the whole file, read+execute, at
// 0x400000) and the code at the entry point.
func pauseELF() []byte {
	const (
		base    = 0x400000
		ehsize  = 64
		phsize  = 56
		codeOff = ehsize + phsize
	)
	code := []byte{
		0xb8, 0x22, 0x00, 0x00, 0x00, // mov eax, 34 (pause)
		0x0f, 0x05, // syscall
		0xeb, 0xf7, // jmp back to mov (-9)
	}
	size := uint64(codeOff + len(code))
	var b bytes.Buffer
	w := func(v any) { binary.Write(&b, binary.LittleEndian, v) }
	// ELF header: 64-bit, little endian, version 1, System V ABI.
	b.Write([]byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	w(uint16(2))              // e_type: executable
	w(uint16(0x3e))           // e_machine: x86-64
	w(uint32(1))              // e_version
	w(uint64(base + codeOff)) // e_entry
	w(uint64(ehsize))         // e_phoff
	w(uint64(0))              // e_shoff: no sections
	w(uint32(0))              // e_flags
	w(uint16(ehsize))         // e_ehsize
	w(uint16(phsize))         // e_phentsize
	w(uint16(1))              // e_phnum
	w(uint16(0))              // e_shentsize
	w(uint16(0))              // e_shnum
	w(uint16(0))              // e_shstrndx
	// Program header: PT_LOAD of the whole file, R+X.
	w(uint32(1))      // p_type
	w(uint32(5))      // p_flags
	w(uint64(0))      // p_offset
	w(uint64(base))   // p_vaddr
	w(uint64(base))   // p_paddr
	w(size)           // p_filesz
	w(size)           // p_memsz
	w(uint64(0x1000)) // p_align
	b.Write(code)
	return b.Bytes()
}
