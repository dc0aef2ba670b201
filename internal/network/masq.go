package network

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/berth-cri/berth/internal/logctx"
)

// releaseOrphanMasq removes the ipMasq rule and chain that the bridge (and
// ptp) plugin made for a pod whose network namespace is gone. Those plugins
// (v1.1.1, Debian's) find the pod's addresses, and so the rule, through the
// pod's interface: without the namespace their DEL frees the IP but leaves
// the rule and its chain in nat POSTROUTING for ever.
//
// Only a rule whose comment is exactly the plugins' `name: "<net>" id:
// "<pod>"` and that jumps to a CNI- chain is touched, so nothing of another
// pod, network or runtime can match. Best-effort: failures are logged.
func (m *Manager) releaseOrphanMasq(ctx context.Context, network, podID string) {
	comment := fmt.Sprintf("name: %q id: %q", network, podID)
	for _, bin := range []string{"iptables", "ip6tables"} {
		if _, err := exec.LookPath(bin); err != nil {
			continue
		}
		out, err := exec.CommandContext(ctx, bin, "-w", "-t", "nat", "-S", "POSTROUTING").Output()
		if err != nil {
			logctx.G(ctx, m.log).WithError(err).Warnf("list %s nat POSTROUTING for pod %s", bin, podID)
			continue
		}
		for _, line := range strings.Split(string(out), "\n") {
			rule, err := splitRule(line)
			if err != nil || len(rule) < 2 || rule[0] != "-A" {
				continue
			}
			chain := masqChain(rule, comment)
			if chain == "" {
				continue
			}
			for _, args := range [][]string{
				append([]string{"-D"}, rule[1:]...),
				{"-F", chain},
				{"-X", chain},
			} {
				cmd := append([]string{"-w", "-t", "nat"}, args...)
				if out, err := exec.CommandContext(ctx, bin, cmd...).CombinedOutput(); err != nil {
					logctx.G(ctx, m.log).WithError(err).Warnf("%s %s: %s", bin, strings.Join(cmd, " "), out)
					break
				}
			}
			logctx.G(ctx, m.log).Infof("removed orphaned masquerade chain %s of pod %s", chain, podID)
		}
	}
}

// masqChain is the CNI- chain rule jumps to when its comment is comment.
func masqChain(rule []string, comment string) string {
	var gotComment, target string
	for i := 0; i+1 < len(rule); i++ {
		switch rule[i] {
		case "--comment":
			gotComment = rule[i+1]
		case "-j":
			target = rule[i+1]
		}
	}
	if gotComment != comment || !strings.HasPrefix(target, "CNI-") {
		return ""
	}
	return target
}

// splitRule splits a line of `iptables -S` into arguments: words, with
// double-quoted parts (comments) holding spaces and \" escapes.
func splitRule(line string) ([]string, error) {
	var args []string
	var cur strings.Builder
	inArg, quoted := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quoted && c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
		case c == '"':
			quoted, inArg = !quoted, true
		case c == ' ' && !quoted:
			if inArg {
				args = append(args, cur.String())
				cur.Reset()
				inArg = false
			}
		default:
			cur.WriteByte(c)
			inArg = true
		}
	}
	if quoted {
		return nil, errors.New("unterminated quote")
	}
	if inArg {
		args = append(args, cur.String())
	}
	return args, nil
}
