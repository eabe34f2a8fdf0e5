// Package clienttest calls the real server through a client generated from api/ alone, as a Go caller would.
package clienttest

import (
	"context"
	"os"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	imageremovalv1 "imageremoval.io/api/imageremoval/v1"
)

func env(t *testing.T, name string) string {
	t.Helper()
	value := os.Getenv(name)
	if value == "" {
		t.Fatalf("%s is not set (tests/test_go_client.py sets it)", name)
	}
	return value
}

// errorInfo returns the google.rpc.ErrorInfo the status carries in its details.
func errorInfo(t *testing.T, err error) (*status.Status, *errdetails.ErrorInfo) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("not a gRPC status: %v", err)
	}
	for _, detail := range st.Details() {
		if info, ok := detail.(*errdetails.ErrorInfo); ok {
			return st, info
		}
	}
	t.Fatalf("no ErrorInfo in %v", st.Proto())
	return nil, nil
}

func TestRemoveImageAndReadARefusal(t *testing.T) {
	target, namespace := env(t, "IMAGEREMOVAL_TARGET"), env(t, "IMAGEREMOVAL_NAMESPACE")
	imageID := env(t, "IMAGEREMOVAL_IMAGE_ID")
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := imageremovalv1.NewImageRemovalServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// By ID, an image two repositories name needs force: refused before anything changes.
	_, err = client.RemoveImage(ctx, &imageremovalv1.RemoveImageRequest{Image: imageID, Namespace: namespace})
	st, info := errorInfo(t, err)
	if st.Code() != codes.FailedPrecondition || info.GetReason() != imageremovalv1.ErrorReason_IMAGE_CONFLICT.String() || info.GetDomain() != "imageremoval.v1" {
		t.Fatalf("want FAILED_PRECONDITION IMAGE_CONFLICT from imageremoval.v1, got %v %q %q", st.Code(), info.GetReason(), info.GetDomain())
	}
	if got := info.GetMetadata()["conflict"]; got != imageremovalv1.ConflictKind_MULTIPLE_REFERENCES.String() {
		t.Fatalf("conflict metadata: %q", got)
	}

	reply, err := client.RemoveImage(ctx, &imageremovalv1.RemoveImageRequest{Image: imageID, Namespace: namespace, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	var untagged []string
	deleted := ""
	for _, item := range reply.GetItems() {
		switch kind := item.GetItem().(type) {
		case *imageremovalv1.RemovedItem_Untagged:
			untagged = append(untagged, kind.Untagged)
		case *imageremovalv1.RemovedItem_Deleted:
			deleted = kind.Deleted
		}
	}
	if deleted != imageID || len(untagged) != 2 {
		t.Fatalf("want 2 untagged and deleted %s, got %v", imageID, reply.GetItems())
	}

	// Gone now: NOT_FOUND with its reason, and allow_missing makes the retry a success with no items.
	_, err = client.RemoveImage(ctx, &imageremovalv1.RemoveImageRequest{Image: imageID, Namespace: namespace})
	st, info = errorInfo(t, err)
	if st.Code() != codes.NotFound || info.GetReason() != imageremovalv1.ErrorReason_IMAGE_NOT_FOUND.String() {
		t.Fatalf("want NOT_FOUND IMAGE_NOT_FOUND, got %v %q", st.Code(), info.GetReason())
	}
	again, err := client.RemoveImage(ctx, &imageremovalv1.RemoveImageRequest{Image: imageID, Namespace: namespace, AllowMissing: true})
	if err != nil || len(again.GetItems()) != 0 {
		t.Fatalf("allow_missing retry: %v %v", again, err)
	}
}
