use super::*;

fn body(page: &str) -> Body {
    match read_page(page) {
        Ok(PageOutcome::Body(b)) => b,
        other => panic!("not a body: {other:?}"),
    }
}

const PAGE: &str = r#"<!DOCTYPE html><html><head>
<meta property="og:title" content="A &amp; B"><meta property="og:description" content="d">
<meta property="og:image" content="https://img/x"><meta property="og:article:author" content="Me">
<script>var s = "<div id='js_content'>not this</div>";</script></head><body>
<div id="js_article" class="rich_media"><!-- <div id="js_content">no</div> -->
<div class="rich_media_content" id="js_content" style="visibility: hidden;">
<section><div><p>One</p></div><img data-src="https://mmbiz/1" src="data:x" class="i"><img src="keep"></section>
<div><span style="color: red; visibility: hidden">t</span></div></div>
<em id="publish_time">2024-01-01</em></div></body></html>"#;

#[test]
fn the_body_is_the_inner_html_of_js_content_with_lazy_images_and_no_hidden_style() {
    let b = body(PAGE);
    assert!(
        b.html.starts_with("\n<section><div><p>One</p></div>"),
        "{}",
        b.html
    );
    assert!(
        b.html
            .contains(r#"<img data-src="https://mmbiz/1" class="i" src="https://mmbiz/1">"#),
        "{}",
        b.html
    );
    assert!(!b.html.contains("data:x"));
    assert!(b.html.contains(r#"<img src="keep">"#));
    assert!(
        b.html
            .contains(r#"<span style="color: red">t</span></div>"#),
        "{}",
        b.html
    );
    assert!(!b.html.contains("visibility"));
    assert!(
        !b.html.contains("publish_time"),
        "stops at the element's end"
    );
    assert!(!b.html.contains("not this") && !b.html.contains(">no<"));
    assert_eq!(b.title.as_deref(), Some("A & B"));
    assert_eq!(b.description.as_deref(), Some("d"));
    assert_eq!(b.image.as_deref(), Some("https://img/x"));
    assert_eq!(b.author.as_deref(), Some("Me"));
}

#[test]
fn a_fragment_and_a_picture_post_are_read() {
    let b = body(r#"<div id="js_content"><p>only</p></div>"#);
    assert_eq!(b.html, "<p>only</p>");
    assert_eq!(b.title, None);
    let b =
        body(r#"<html><body><div id='js_article'><p>pic</p><img data-src=a></div></body></html>"#);
    assert_eq!(b.html, r#"<p>pic</p><img data-src="a" src="a">"#);
}

#[test]
fn error_pages_give_their_status() {
    let page = |t: &str| {
        format!(
            r#"<html><body><div class="weui-msg"><div class="weui-msg__text-area"><h2 class="weui-msg__title">{t}</h2></div></div></body></html>"#
        )
    };
    let cases = [
        ("该内容已被发布者删除", Gone::Deleted),
        ("The content has been deleted by the author.", Gone::Deleted),
        ("内容审核中", Gone::UnderReview),
        ("该内容暂时无法查看", Gone::Unavailable),
        ("此内容因违规无法查看", Gone::Unavailable),
        ("发送失败无法查看", Gone::Unavailable),
        (
            "Unable to view this content because it violates regulation",
            Gone::Unavailable,
        ),
    ];
    for (text, gone) in cases {
        let out = read_page(&page(text)).expect(text);
        assert_eq!(out, PageOutcome::Gone(gone), "{text}");
        assert_eq!(out.status(), 1000);
    }
    assert!(matches!(
        read_page(&page("别的")),
        Err(FetchError::Parse(_))
    ));
}

#[test]
fn the_human_check_is_its_own_outcome_and_other_pages_are_parse_errors() {
    let check = r#"<html><body><div class="weui-msg"><p class="weui-msg__title">当前环境异常，完成验证后即可继续访问。</p></div></body></html>"#;
    assert_eq!(read_page(check).unwrap(), PageOutcome::HumanCheck);
    assert!(matches!(
        read_page("<html><body>hello</body></html>"),
        Err(FetchError::Parse(_))
    ));
    assert!(matches!(
        read_page(r#"<div id="js_content"><p>cut"#),
        Err(FetchError::Parse(_))
    ));
    // The words inside an article are the article's.
    assert!(matches!(
        read_page(r#"<div id="js_content">当前环境异常</div>"#),
        Ok(PageOutcome::Body(_))
    ));
}

#[test]
fn mp_links_are_fetched_from_the_page_base() {
    assert_eq!(
        page_url(
            "http://mp.weixin.qq.com/s?__biz=M&mid=1&idx=1&sn=x#rd",
            "http://127.0.0.1:9/"
        ),
        Some("http://127.0.0.1:9/s?__biz=M&mid=1&idx=1&sn=x".into())
    );
    assert_eq!(
        page_url("https://mp.weixin.qq.com/s/tok", "https://mp.weixin.qq.com"),
        Some("https://mp.weixin.qq.com/s/tok".into())
    );
    assert_eq!(page_url("https://example.com/a", "http://x"), None);
    assert_eq!(
        page_url("https://mp.weixin.qq.com.evil.example/s/tok", "http://x"),
        None
    );
}
