package supervisor

import (
	"strings"
	"testing"
)

func TestCheckID(t *testing.T) {
	for id, ok := range map[string]bool{
		"abc":                     true,
		"A-b_c+d.e":               true,
		strings.Repeat("f", 64):   true,
		strings.Repeat("a", 1024): true,
		strings.Repeat("a", 1025): false,
		"":                        false,
		".":                       false,
		"..":                      false,
		"a/b":                     false,
		"a b":                     false,
		"a\x00":                   false,
		"é":                       false,
		"a:b":                     false,
	} {
		if err := checkID(id); (err == nil) != ok {
			t.Errorf("checkID(%.20q) = %v, want ok %v", id, err, ok)
		}
	}
}
