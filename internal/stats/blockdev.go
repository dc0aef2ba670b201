package stats

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
)

// BlockDevice names block device major:minor as cAdvisor labels its IO
// metrics: "/dev/<DEVNAME>" as sysfs gives it, or "major:minor" for a
// device sysfs does not know (gone since it was counted).
func BlockDevice(major, minor uint64) string { return blockDevice("/sys", major, minor) }

func blockDevice(sys string, major, minor uint64) string {
	id := fmt.Sprintf("%d:%d", major, minor)
	data, err := os.ReadFile(sys + "/dev/block/" + id + "/uevent")
	if err != nil {
		return id
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if name, ok := bytes.CutPrefix(sc.Bytes(), []byte("DEVNAME=")); ok && len(name) > 0 {
			return "/dev/" + string(name)
		}
	}
	return id
}
