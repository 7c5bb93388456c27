use super::*;
use serde_json::json;

#[test]
fn counts_are_read_leniently() {
    assert_eq!(parse_count(&json!(12)), Some(12));
    assert_eq!(parse_count(&json!("1.2万")), Some(12_000));
    assert_eq!(parse_count(&json!("10万+")), Some(100_000));
    assert_eq!(parse_count(&json!("3亿")), Some(300_000_000));
    assert_eq!(parse_count(&json!("1,234")), Some(1234));
    assert_eq!(parse_count(&json!("1.5w")), Some(15_000));
    assert_eq!(parse_count(&json!("many")), None);
    assert_eq!(parse_count(&Value::Null), None);
}

#[test]
fn codes_map_to_reasons() {
    let e = |code: i64| {
        parse_list(
            &json!({"errCode": code, "errMsg": "x"}).to_string(),
            "B",
            true,
        )
        .expect_err("error")
    };
    assert_eq!(e(-2041).reason(), "closed");
    assert!(matches!(e(-2012), FetchError::SkeyExpired(_)));
    assert_eq!(e(-2012).reason(), "session_expired");
    assert_eq!(e(-2010).reason(), "session_expired");
    assert_eq!(e(-2014).reason(), "rate_limited");
    assert_eq!(e(-1).reason(), "network");
    assert_eq!(
        parse_list("<html>", "B", true).expect_err("html").reason(),
        "parse"
    );
    assert_eq!(
        parse_list("{}", "B", true)
            .expect_err("no reviews")
            .reason(),
        "parse"
    );
    let under_data = json!({"data": {"errcode": -2012, "errmsg": "x"}}).to_string();
    assert!(matches!(
        parse_cover(&under_data, "B", true, 5),
        Err(FetchError::SkeyExpired(_))
    ));
}

#[test]
fn times_fall_back_and_doc_urls_give_the_mp_id() {
    let body = json!({"reviews": [
        {"createTime": 30, "subReviews": [
            {"review": {"reviewId": "B_tokA", "createTime": 20, "mpInfo": {"title": "A", "originalId": "tok~A", "time": "10",
                "doc_url": "http://mp.weixin.qq.com/s?__biz=MzA=&mid=7&idx=2&sn=x", "readNum": "2.5万"}}},
            {"review": {"reviewId": "B_tokB", "mpInfo": {"title": "B"}}}]},
        {"createTime": 40, "review": {"reviewId": "B_tokC", "createTime": 40, "mpInfo": {"title": "C", "originalId": "tokC"}}},
        {"createTime": 50, "review": {"mpInfo": {"title": "no token"}}}
    ]});
    let groups = parse_list(&body.to_string(), "B", false).expect("page");
    assert_eq!(groups.len(), 3);
    let (a, b) = (&groups[0][0], &groups[0][1]);
    assert_eq!((a.id.as_str(), a.publish_time), ("7_2", 10));
    assert_eq!(a.url, "https://mp.weixin.qq.com/s/tok~A");
    assert_eq!(a.read_num, Some(25_000));
    assert_eq!((b.id.as_str(), b.publish_time), ("tokB", 30));
    assert_eq!(groups[1][0].publish_time, 40);
    assert!(groups[2].is_empty());
}
