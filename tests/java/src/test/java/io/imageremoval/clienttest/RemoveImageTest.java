package io.imageremoval.clienttest;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.rpc.ErrorInfo;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import io.imageremoval.v1.ConflictKind;
import io.imageremoval.v1.ErrorReason;
import io.imageremoval.v1.ImageRemovalServiceGrpc;
import io.imageremoval.v1.RemoveImageRequest;
import io.imageremoval.v1.RemoveImageResponse;
import io.imageremoval.v1.RemovedItem;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** Calls the real server through stubs generated from api/ alone, as a Java caller would. */
class RemoveImageTest {
  private ManagedChannel channel;
  private ImageRemovalServiceGrpc.ImageRemovalServiceBlockingStub stub;
  private final String namespace = env("IMAGEREMOVAL_NAMESPACE");
  private final String imageId = env("IMAGEREMOVAL_IMAGE_ID");

  private static String env(String name) {
    String value = System.getenv(name);
    assertNotNull(value, name + " is not set (tests/test_java_client.py sets it)");
    return value;
  }

  @BeforeEach
  void connect() {
    channel = ManagedChannelBuilder.forTarget(env("IMAGEREMOVAL_TARGET")).usePlaintext().build();
    stub = ImageRemovalServiceGrpc.newBlockingStub(channel).withDeadlineAfter(30, TimeUnit.SECONDS);
  }

  @AfterEach
  void close() throws InterruptedException {
    channel.shutdownNow().awaitTermination(10, TimeUnit.SECONDS);
  }

  /** The google.rpc.ErrorInfo in the status details (grpc-status-details-bin). */
  private static ErrorInfo errorInfo(StatusRuntimeException error) throws InvalidProtocolBufferException {
    com.google.rpc.Status status = StatusProto.fromThrowable(error);
    assertNotNull(status, "no rich status in " + error);
    for (Any detail : status.getDetailsList()) {
      if (detail.is(ErrorInfo.class)) {
        return detail.unpack(ErrorInfo.class);
      }
    }
    throw new AssertionError("no ErrorInfo in " + status);
  }

  @Test
  void removesAnImageAndReadsARefusalsErrorInfo() throws InvalidProtocolBufferException {
    RemoveImageRequest byId = RemoveImageRequest.newBuilder().setImage(imageId).setNamespace(namespace).build();

    // By ID, an image two repositories name needs force: refused before anything changes.
    StatusRuntimeException refused = assertThrows(StatusRuntimeException.class, () -> stub.removeImage(byId));
    assertEquals(Status.Code.FAILED_PRECONDITION, refused.getStatus().getCode());
    ErrorInfo info = errorInfo(refused);
    assertEquals(ErrorReason.IMAGE_CONFLICT.name(), info.getReason());
    assertEquals("imageremoval.v1", info.getDomain());
    assertEquals(ConflictKind.MULTIPLE_REFERENCES.name(), info.getMetadataOrThrow("conflict"));

    RemoveImageResponse reply = stub.removeImage(byId.toBuilder().setForce(true).build());
    List<RemovedItem> items = reply.getItemsList();
    assertEquals(3, items.size(), items.toString());
    assertEquals(RemovedItem.ItemCase.UNTAGGED, items.get(0).getItemCase());
    assertEquals(RemovedItem.ItemCase.UNTAGGED, items.get(1).getItemCase());
    assertEquals(imageId, items.get(2).getDeleted());

    StatusRuntimeException missing = assertThrows(StatusRuntimeException.class, () -> stub.removeImage(byId));
    assertEquals(Status.Code.NOT_FOUND, missing.getStatus().getCode());
    assertEquals(ErrorReason.IMAGE_NOT_FOUND.name(), errorInfo(missing).getReason());
  }
}
