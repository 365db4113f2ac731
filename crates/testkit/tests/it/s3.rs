// `TestBucket` against the local S3 server (moto).
#![cfg(feature = "s3")]

use groundwork_testkit::TestBucket;
use object_store::aws::AmazonS3;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

/// Whether the bucket still answers a listing; a deleted bucket fails with `NoSuchBucket`.
async fn bucket_exists(store: &AmazonS3) -> anyhow::Result<bool> {
    match store.list_with_delimiter(None).await {
        Ok(_) => Ok(true),
        Err(err) if format!("{err:?}").contains("NoSuchBucket") => Ok(false),
        Err(err) => Err(err.into()),
    }
}

#[tokio::test]
async fn bucket_is_usable_and_deleted_with_its_objects_on_drop() -> anyhow::Result<()> {
    let bucket = TestBucket::create().await?;
    assert!(bucket.bucket().starts_with("gw-test-"));
    let store = bucket.store().clone();

    let nested = Path::from("reports/2026/05/summary.json");
    store
        .put(&nested, PutPayload::from_static(b"{\"ok\":true}"))
        .await?;
    store
        .put(&Path::from("top.txt"), PutPayload::from_static(b"hello"))
        .await?;
    let body = store.get(&nested).await?.bytes().await?;
    assert_eq!(body.as_ref(), b"{\"ok\":true}");
    assert!(bucket_exists(&store).await?);

    drop(bucket);

    assert!(!bucket_exists(&store).await?);
    Ok(())
}

#[tokio::test]
async fn bucket_is_deleted_when_the_test_panics() -> anyhow::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let failing_test = tokio::spawn(async move {
        let Ok(bucket) = TestBucket::create().await else {
            return;
        };
        let put = bucket
            .store()
            .put(&Path::from("a/b.txt"), PutPayload::from_static(b"x"))
            .await;
        if put.is_ok() {
            let _ = tx.send(bucket.store().clone());
        }
        panic!("simulated test failure");
    });

    assert!(failing_test.await.is_err_and(|err| err.is_panic()));
    let store = rx.recv()?;
    assert!(!bucket_exists(&store).await?);
    Ok(())
}

#[tokio::test]
async fn explicit_cleanup_deletes_the_bucket() -> anyhow::Result<()> {
    let bucket = TestBucket::create().await?;
    let store = bucket.store().clone();
    store
        .put(&Path::from("k"), PutPayload::from_static(b"v"))
        .await?;

    bucket.cleanup().await?;

    assert!(!bucket_exists(&store).await?);
    Ok(())
}

#[tokio::test]
async fn concurrent_buckets_are_distinct() -> anyhow::Result<()> {
    let (first, second) = tokio::try_join!(TestBucket::create(), TestBucket::create())?;
    assert_ne!(first.bucket(), second.bucket());

    first
        .store()
        .put(&Path::from("only-in-first"), PutPayload::from_static(b"1"))
        .await?;
    let in_second = second.store().list_with_delimiter(None).await?;
    assert!(in_second.objects.is_empty());
    Ok(())
}
