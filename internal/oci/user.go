package oci

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/moby/sys/user"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

// User is the identity of a container's first process, as
// ContainerStatus.user reports it.
type User struct {
	UID uint32
	GID uint32
	// AdditionalGids starts with the primary GID (as `id -G` shows it), then
	// image groups (policy Merge) and the CRI supplemental groups.
	AdditionalGids []uint32
}

// ContainerUser is u in the CRI ContainerStatus.user shape.
func (u User) ContainerUser() *runtimeapi.ContainerUser {
	groups := make([]int64, 0, len(u.AdditionalGids))
	for _, g := range u.AdditionalGids {
		groups = append(groups, int64(g))
	}
	return &runtimeapi.ContainerUser{Linux: &runtimeapi.LinuxContainerUser{
		Uid: int64(u.UID), Gid: int64(u.GID), SupplementalGroups: groups,
	}}
}

// userRequest is the part of a CRI security context that picks the user;
// sandbox and container contexts both reduce to it.
type userRequest struct {
	runAsUser     *runtimeapi.Int64Value
	runAsGroup    *runtimeapi.Int64Value
	runAsUsername string
	supplemental  []int64
	strict        bool
}

func containerUserRequest(sc *runtimeapi.LinuxContainerSecurityContext) userRequest {
	return userRequest{
		runAsUser:     sc.GetRunAsUser(),
		runAsGroup:    sc.GetRunAsGroup(),
		runAsUsername: sc.GetRunAsUsername(),
		supplemental:  sc.GetSupplementalGroups(),
		strict:        sc.GetSupplementalGroupsPolicy() == runtimeapi.SupplementalGroupsPolicy_Strict,
	}
}

// resolveUser picks the process user from the CRI request, else the image's
// User, resolving names against the image's /etc/passwd and /etc/group.
func resolveUser(files ImageFiles, req userRequest, imageUser string) (User, error) {
	if req.runAsGroup != nil && req.runAsUser == nil && req.runAsUsername == "" {
		return User{}, fmt.Errorf("security_context.run_as_group is set without run_as_user or run_as_username: %w", errdefs.ErrInvalidArgument)
	}
	if req.runAsUser != nil && req.runAsUsername != "" {
		return User{}, fmt.Errorf("security_context: only one of run_as_user and run_as_username may be set: %w", errdefs.ErrInvalidArgument)
	}
	db := userDB{read: files}
	var (
		u    User
		name string // passwd name, for /etc/group membership
		err  error
	)
	switch {
	case req.runAsUser != nil:
		if u.UID, err = toID("security_context.run_as_user", req.runAsUser.GetValue()); err != nil {
			return User{}, err
		}
		if e, ok, err := db.userByID(u.UID); err != nil {
			return User{}, err
		} else if ok {
			u.GID, name = e.gid, e.name
		}
	case req.runAsUsername != "":
		e, ok, err := db.userByName(req.runAsUsername)
		if err != nil {
			return User{}, err
		}
		if !ok {
			return User{}, fmt.Errorf("security_context.run_as_username %q not found in the image's /etc/passwd: %w", req.runAsUsername, errdefs.ErrNotFound)
		}
		u.UID, u.GID, name = e.uid, e.gid, e.name
	default:
		if u, name, err = imageUserSpec(db, imageUser); err != nil {
			return User{}, err
		}
	}
	if req.runAsGroup != nil {
		if u.GID, err = toID("security_context.run_as_group", req.runAsGroup.GetValue()); err != nil {
			return User{}, err
		}
	}

	u.AdditionalGids = []uint32{u.GID}
	if !req.strict && name != "" {
		groups, err := db.groupsOf(name)
		if err != nil {
			return User{}, err
		}
		u.AdditionalGids = appendUniqueIDs(u.AdditionalGids, groups...)
	}
	for i, g := range req.supplemental {
		gid, err := toID(fmt.Sprintf("security_context.supplemental_groups[%d]", i), g)
		if err != nil {
			return User{}, err
		}
		u.AdditionalGids = appendUniqueIDs(u.AdditionalGids, gid)
	}
	return u, nil
}

// imageUserSpec resolves an image config User: "", "uid", "name",
// "uid:gid", "name:group" and mixes. A name missing from the image is an
// error; a numeric uid missing from passwd runs with gid 0.
func imageUserSpec(db userDB, spec string) (User, string, error) {
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	var u User
	var name string
	if userPart == "" {
		userPart = "0"
	}
	if n, err := strconv.ParseUint(userPart, 10, 32); err == nil && n != math.MaxUint32 {
		u.UID = uint32(n)
		e, ok, err := db.userByID(u.UID)
		if err != nil {
			return User{}, "", err
		}
		if ok {
			u.GID, name = e.gid, e.name
		}
	} else {
		e, ok, err := db.userByName(userPart)
		if err != nil {
			return User{}, "", err
		}
		if !ok {
			return User{}, "", fmt.Errorf("image user %q not found in the image's /etc/passwd: %w", userPart, errdefs.ErrNotFound)
		}
		u.UID, u.GID, name = e.uid, e.gid, e.name
	}
	if hasGroup && groupPart != "" {
		if n, err := strconv.ParseUint(groupPart, 10, 32); err == nil && n != math.MaxUint32 {
			u.GID = uint32(n)
		} else {
			gid, ok, err := db.groupByName(groupPart)
			if err != nil {
				return User{}, "", err
			}
			if !ok {
				return User{}, "", fmt.Errorf("image group %q not found in the image's /etc/group: %w", groupPart, errdefs.ErrNotFound)
			}
			u.GID = gid
		}
	}
	return u, name, nil
}

// toID checks a CRI int64 id: 0..2^32-2 (2^32-1 is the kernel's "no id").
func toID(field string, v int64) (uint32, error) {
	if v < 0 || v >= math.MaxUint32 {
		return 0, fmt.Errorf("%s %d is out of range: %w", field, v, errdefs.ErrInvalidArgument)
	}
	return uint32(v), nil
}

func appendUniqueIDs(list []uint32, add ...uint32) []uint32 {
	for _, a := range add {
		if !slices.Contains(list, a) {
			list = append(list, a)
		}
	}
	return list
}

// ImageFiles reads a file of the image (an absolute path in it, such as
// /etc/passwd): its content, or nil without error when it does not exist.
type ImageFiles func(rel string) ([]byte, error)

// RootfsFiles reads the image's files from a mounted rootfs. Paths are
// resolved inside it (securejoin), so a symlinked /etc/passwd cannot make
// berthd read a host file; at most maxDBSize bytes are read.
func RootfsFiles(rootfs string) ImageFiles {
	return func(rel string) ([]byte, error) {
		if rootfs == "" {
			return nil, nil
		}
		p, err := securejoin.SecureJoin(rootfs, rel)
		if err != nil {
			return nil, fmt.Errorf("resolve %s in rootfs: %w", rel, err)
		}
		f, err := os.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read image %s: %w", rel, err)
		}
		defer f.Close()
		data, err := io.ReadAll(io.LimitReader(f, maxDBSize))
		if err != nil {
			return nil, fmt.Errorf("read image %s: %w", rel, err)
		}
		if data == nil {
			data = []byte{} // present, empty
		}
		return data, nil
	}
}

// userDB reads the image's /etc/passwd and /etc/group. A missing file is an
// empty database. The lines are parsed as runc and containerd parse them
// (moby/sys/user): a missing or non-numeric id reads as 0, so a broken
// line of the image's own file can name root, as it would there.
type userDB struct{ read ImageFiles }

type passwdEntry struct {
	name     string
	uid, gid uint32
}

// maxDBSize bounds what we read from an image file.
const maxDBSize = 8 << 20

// validID reports whether a parsed id fits the 32 bits the kernel takes.
func validID(id int) bool { return id >= 0 && id <= math.MaxUint32 }

// entry reports whether a parsed line is an entry, not a comment.
func entry(name string) bool { return name != "" && !strings.HasPrefix(name, "#") }

// findUser returns the first passwd entry matching.
func (db userDB) findUser(match func(passwdEntry) bool) (passwdEntry, bool, error) {
	data, err := db.read("/etc/passwd")
	if err != nil || data == nil {
		return passwdEntry{}, false, err
	}
	var found []passwdEntry
	_, err = user.ParsePasswdFilter(bytes.NewReader(data), func(u user.User) bool {
		if len(found) == 0 && entry(u.Name) && validID(u.Uid) && validID(u.Gid) {
			if e := (passwdEntry{name: u.Name, uid: uint32(u.Uid), gid: uint32(u.Gid)}); match(e) {
				found = append(found, e)
			}
		}
		return false
	})
	if err != nil {
		return passwdEntry{}, false, fmt.Errorf("read image /etc/passwd: %w", err)
	}
	if len(found) == 0 {
		return passwdEntry{}, false, nil
	}
	return found[0], true, nil
}

func (db userDB) userByID(uid uint32) (passwdEntry, bool, error) {
	return db.findUser(func(e passwdEntry) bool { return e.uid == uid })
}

func (db userDB) userByName(name string) (passwdEntry, bool, error) {
	return db.findUser(func(e passwdEntry) bool { return e.name == name })
}

// groups returns the gids of the /etc/group entries matching, in order.
func (db userDB) groups(match func(user.Group) bool) ([]uint32, error) {
	data, err := db.read("/etc/group")
	if err != nil || data == nil {
		return nil, err
	}
	var gids []uint32
	_, err = user.ParseGroupFilter(bytes.NewReader(data), func(g user.Group) bool {
		if entry(g.Name) && validID(g.Gid) && match(g) {
			gids = append(gids, uint32(g.Gid))
		}
		return false
	})
	if err != nil {
		return nil, fmt.Errorf("read image /etc/group: %w", err)
	}
	return gids, nil
}

func (db userDB) groupByName(name string) (uint32, bool, error) {
	gids, err := db.groups(func(g user.Group) bool { return g.Name == name })
	if err != nil || len(gids) == 0 {
		return 0, false, err
	}
	return gids[0], true, nil
}

// groupsOf lists the gids of the /etc/group entries naming user as member.
func (db userDB) groupsOf(name string) ([]uint32, error) {
	return db.groups(func(g user.Group) bool {
		return slices.ContainsFunc(g.List, func(m string) bool { return strings.TrimSpace(m) == name })
	})
}
