package nri

import (
	"context"
	"errors"
	"fmt"

	"github.com/containerd/nri/pkg/adaptation"
	"github.com/containerd/nri/pkg/api"

	"github.com/berth-cri/berth/internal/container"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/logctx"
	"github.com/berth-cri/berth/internal/sandbox"
)

// synchronize hands a plugin that just connected (or, at Start, the
// pre-installed ones) every pod and container, and carries out the
// updates they answer with. The adaptation calls it with plugin syncs
// blocked against creates (see BlockSync), so the lists are complete.
func (n *NRI) synchronize(ctx context.Context, cb adaptation.SyncCB) error {
	var pods []*api.PodSandbox
	for _, s := range n.pods.List(sandbox.Filter{}) {
		pods = append(pods, podSandbox(s, s.Config()))
	}
	var ctrs []*api.Container
	for _, c := range n.ctrs.List(container.Filter{}) {
		ctrs = append(ctrs, n.container(c, nil))
	}
	updates, err := cb(ctx, pods, ctrs)
	if err != nil {
		return fmt.Errorf("synchronize NRI plugins: %w", err)
	}
	n.carryOut(ctx, updates, nil)
	return nil
}

// carryOut applies the updates and evictions plugins put in their replies,
// after the reply, on a goroutine of its own: the event was relayed under
// the lock of the container it is about (or, at start, the adaptation's),
// and these take other containers' locks. Two containers stopping at once,
// each with a plugin handing its resources to the other, would otherwise
// wait for each other forever. They run without ctx's deadline, but log
// with its request's fields: that request caused them.
func (n *NRI) carryOut(ctx context.Context, updates []*api.ContainerUpdate, evictions []*api.ContainerEviction) {
	if len(updates) == 0 && len(evictions) == 0 {
		return
	}
	ctx = context.WithoutCancel(ctx)
	go func() {
		n.applyUpdates(ctx, updates)
		n.evict(ctx, evictions)
	}()
}

// updateFromPlugin serves a plugin's own UpdateContainers request and
// returns the updates that failed.
func (n *NRI) updateFromPlugin(ctx context.Context, updates []*api.ContainerUpdate) ([]*api.ContainerUpdate, error) {
	return n.applyUpdates(ctx, updates), nil
}

// applyUpdates changes the resources of the containers named, through the
// container manager but without relaying the change back to plugins, and
// returns the updates that failed. A failure is logged unless the plugin
// said it may be ignored.
func (n *NRI) applyUpdates(ctx context.Context, updates []*api.ContainerUpdate) []*api.ContainerUpdate {
	var failed []*api.ContainerUpdate
	for _, u := range updates {
		if u == nil {
			continue
		}
		// The request's container is not this one.
		ctx := logctx.WithField(ctx, logctx.ContainerField, u.GetContainerId())
		if err := n.applyUpdate(ctx, u); err != nil {
			failed = append(failed, u)
			if !u.GetIgnoreFailure() {
				logctx.G(ctx, n.log).WithError(err).Warn("NRI: update a container as a plugin asked")
			}
		}
	}
	return failed
}

func (n *NRI) applyUpdate(ctx context.Context, u *api.ContainerUpdate) error {
	c, err := n.ctrs.Get(u.GetContainerId())
	if err != nil {
		return err
	}
	res := u.GetLinux().GetResources()
	if res == nil {
		return nil
	}
	return n.ctrs.ApplyResources(ctx, c.ID, mergeResources(c.Resources(), res))
}

// evict stops the containers plugins asked to evict, at once (kubelet sees
// them exit and acts as for any other exit).
func (n *NRI) evict(ctx context.Context, evictions []*api.ContainerEviction) {
	for _, e := range evictions {
		ctx := logctx.WithField(ctx, logctx.ContainerField, e.GetContainerId())
		log := logctx.G(ctx, n.log).WithField("reason", e.GetReason())
		log.Warn("NRI: evicting a container as a plugin asked")
		if err := n.ctrs.Stop(ctx, e.GetContainerId(), 0); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			log.WithError(err).Error("NRI: evict a container")
		}
	}
}
